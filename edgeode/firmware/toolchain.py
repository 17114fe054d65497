"""Compiling generated C: the host C compiler (shared libraries for ctypes) and the ARM bare-metal
toolchain with qemu (the Cortex-M4F proof).

Everything runs real subprocesses; a missing tool is reported by :func:`host_cc` / :func:`arm_tools`
returning ``None`` with the reason, so tests can skip with it and CI can install the tools
(``.ci/mcu-setup.sh``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeode.errors import EdgeodeError

__all__ = [
    "ARM_PACKAGES",
    "CORTEX_M4F_FLAGS",
    "HOST_FLAGS",
    "ArmTools",
    "CompileError",
    "arm_tools",
    "compile_host_library",
    "host_cc",
    "run",
    "write_sources",
]

#: C flags of the host build: C99, warnings as errors, and no contraction of a*b+c into FMAs
#: (the Python loop rounds the product and the sum separately).
HOST_FLAGS = ("-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")
#: The Arduino Nano 33 BLE Sense's core (nRF52840): Cortex-M4 with the single-precision FPU, hard-float ABI.
CORTEX_M4F_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
#: Debian packages of the Cortex-M4F proof (what .ci/mcu-setup.sh installs).
ARM_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")


class CompileError(EdgeodeError):
    """A compiler or emulator run failed (the message holds its output)."""


def run(cmd: Sequence[str | Path], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; a nonzero exit or a timeout raises :class:`CompileError` with the command's output."""
    argv = [str(c) for c in cmd]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise CompileError(f"{argv[0]} did not finish in {timeout:g} s: {' '.join(argv)}\n{exc.stdout or ''}") from None
    if proc.returncode != 0:
        raise CompileError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def write_sources(files: dict[str, str], directory: Path) -> list[Path]:
    """Write ``name -> text`` into ``directory``; returns the paths of the ``.c`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / n for n in files if n.endswith(".c")]


def host_cc() -> tuple[str | None, str]:
    """The host C compiler (``cc``, ``gcc`` or ``clang`` on PATH) and, when there is none, why."""
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path, ""
    return None, "no C compiler on PATH (install gcc: apt-get install gcc)"


def compile_host_library(files: dict[str, str], directory: Path, name: str = "solver") -> Path:
    """Compile the ``.c`` files of ``files`` (written into ``directory``) into ``directory/libNAME.so``."""
    cc, why = host_cc()
    if cc is None:
        raise CompileError(why)
    sources = write_sources(files, directory)
    out = directory / f"lib{name}.so"
    run([cc, *HOST_FLAGS, "-o", out, *sources, "-lm"], timeout=120)
    return out


@dataclass(frozen=True)
class ArmTools:
    """Paths of the bare-metal ARM toolchain and the emulator."""

    gcc: str
    size: str
    qemu: str


def arm_tools() -> tuple[ArmTools | None, str]:
    """The ARM toolchain and qemu if all are installed with newlib's semihosting library, else why not."""
    gcc, size, qemu = (shutil.which(n) for n in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"))
    hint = f"install them with: apt-get install {' '.join(ARM_PACKAGES)} (or bash .ci/mcu-setup.sh)"
    missing = [n for n, p in (("arm-none-eabi-gcc", gcc), ("arm-none-eabi-size", size), ("qemu-system-arm", qemu))
               if p is None]
    if missing:
        return None, f"{', '.join(missing)} not on PATH; {hint}"
    probe = subprocess.run([gcc, *CORTEX_M4F_FLAGS, "--specs=rdimon.specs", "-print-file-name=librdimon.a"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not Path(probe.stdout.strip()).is_file():
        return None, f"newlib's librdimon.a (semihosting) not found for {gcc}; {hint}"
    return ArmTools(gcc, size, qemu), ""
