/* Emulator entry of a generated firmware project (edgeode pack): replaces the board's main.cpp on qemu
 * mps2-an386, printing through semihosting. Used by benchmarks/mcu_firmware_qemu.py, not on a board. */
#include <stdio.h>

#include "edgeode_firmware.h"

void edgeode_print(const char *line)
{
    printf("%s\n", line);
}

int main(void)
{
    if (edgeode_setup() != 0) return 2;
    const int bad = edgeode_check_samples();
    return bad == 0 ? 0 : 1;
}
