#!/usr/bin/env bash
# apt-get install the given Debian packages (none given: nothing to do). Shared by the CI setup scripts.
#   bash .ci/apt-install.sh NAME PACKAGE...      (NAME prefixes the messages)
set -euo pipefail
who="$1"
shift
[ "$#" -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "$who: need root to apt-get install $*" >&2
    exit 1
fi
echo "$who: installing $*" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
