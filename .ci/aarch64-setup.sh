#!/usr/bin/env bash
# Prepare the arm64 (aarch64) proof of `edgeode pack`: qemu user-mode emulation plus a minimal Debian
# bookworm arm64 userland (what Raspberry Pi OS 64-bit is built on: Python 3.11, glibc 2.36).
#
# Idempotent and cached: a second run with the sysroot in place does nothing (about 0.1 s).
# The sysroot goes to $EDGEODE_ARM64_SYSROOT, default /var/tmp/edgeode-arm64/sysroot, which is where
# tests/test_aarch64.py looks. Needs root (apt-get) and Debian's package mirror; nothing else.
#
#   bash .ci/aarch64-setup.sh          # install qemu-user-static + mmdebstrap, build the sysroot
set -euo pipefail

SYSROOT="${EDGEODE_ARM64_SYSROOT:-/var/tmp/edgeode-arm64/sysroot}"
STAMP="$SYSROOT/.edgeode-sysroot-ok"

need_pkgs=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need_pkgs+=(qemu-user-static)
command -v mmdebstrap >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
bash "$(dirname "$0")/apt-install.sh" aarch64-setup "${need_pkgs[@]}"

if [ ! -f "$STAMP" ]; then
    # The Debian mirror apt is configured with (deb822 or one-line format), else the default one.
    mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
    if [ -z "$mirror" ]; then
        mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)"
    fi
    mirror="${mirror:-http://deb.debian.org/debian}"
    echo "aarch64-setup: building arm64 bookworm sysroot at $SYSROOT from $mirror" >&2
    parent="$(dirname "$SYSROOT")"
    mkdir -p "$parent"
    tmp="$(mktemp -d "$parent/.sysroot-build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --arch=arm64 --variant=extract --include=python3.11,libstdc++6 \
        bookworm "$tmp/root" "$mirror"
    # onnxruntime reads /proc/cpuinfo at import; under qemu 7.2 it would read the host's x86 file and
    # crash. A Raspberry Pi 4 (Cortex-A72: implementer 0x41, part 0xd08) cpuinfo in the sysroot fixes
    # it (qemu -L maps /proc/cpuinfo to SYSROOT/proc/cpuinfo). Run with QEMU_CPU=cortex-a72.
    mkdir -p "$tmp/root/proc"
    : > "$tmp/root/proc/cpuinfo"
    for n in 0 1 2 3; do
        cat >> "$tmp/root/proc/cpuinfo" <<EOF
processor	: $n
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
    done
    cat >> "$tmp/root/proc/cpuinfo" <<EOF
Hardware	: BCM2835
Revision	: c03111
Model		: Raspberry Pi 4 Model B Rev 1.1
EOF
    test -x "$tmp/root/usr/bin/python3.11"
    touch "$tmp/root/.edgeode-sysroot-ok"
    rm -rf "$SYSROOT"
    mv "$tmp/root" "$SYSROOT"
fi

QEMU_CPU=cortex-a72 qemu-aarch64-static -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11" -c \
    'import platform, sys; print("aarch64-setup: ok,", platform.machine(), sys.version.split()[0])'
