#!/usr/bin/env bash
# Prepare the Cortex-M4F proof of the generated firmware (tests/test_firmware_solver.py): the bare-metal
# ARM toolchain with newlib (semihosting) and qemu's system emulator (mps2-an386 board).
#
# Idempotent: with the tools on PATH it only checks them (well under a second). Needs root (apt-get)
# and Debian's package mirror; nothing else.
#
#   bash .ci/mcu-setup.sh
set -euo pipefail

need_pkgs=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need_pkgs+=(qemu-system-arm)
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    rdimon="$(arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard --specs=rdimon.specs \
        -print-file-name=librdimon.a)"
    [ -f "$rdimon" ] || need_pkgs+=(libnewlib-arm-none-eabi)
else
    need_pkgs+=(libnewlib-arm-none-eabi)
fi
bash "$(dirname "$0")/apt-install.sh" mcu-setup "${need_pkgs[@]}"
echo "mcu-setup: ok, $(arm-none-eabi-gcc -dumpversion) and $(qemu-system-arm --version | head -n1)"
