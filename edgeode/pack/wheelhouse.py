"""The wheelhouse of a device package: the runtime's dependencies as wheels for the *device's* platform.

The wheels are fetched on the host with pip's cross-platform options (``pip download
--only-binary=:all: --platform TAG ... --python-version X.Y --implementation cp --abi cpXY``), so pip
resolves the dependency tree for the device, not for the host. edgeode itself is built as a pure
``py3-none-any`` wheel from its source tree (``pip wheel --no-deps``), without torch: torch is only in
the ``train`` extra, which the device never installs.

Before the package is accepted, :func:`check_offline_install` asks pip to resolve the exact install
command the device will run (``--no-index --find-links wheels``, dry run, for the device's platform),
so a wheelhouse that would need the network on the device is an error here, not there.

Standard library only (pip is run as a subprocess).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeode.errors import PackError

__all__ = [
    "Wheel",
    "parse_wheel_name",
    "pip_target_args",
    "download_wheels",
    "build_edgeode_wheel",
    "check_wheels",
    "check_offline_install",
]

# pip's words for "no wheel of this package fits the platform / Python"; group 1 is the requirement.
_NO_MATCH = (
    re.compile(r"No matching distribution found for ([^\s;]+)"),
    re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)"),
)
_CONFLICT = re.compile(r"Cannot install (.+?) because these package versions have conflicting dependencies")
_NETWORK = ("Failed to establish a new connection", "Temporary failure in name resolution", "Could not fetch URL",
            "ConnectionError", "Read timed out", "Network is unreachable")
_PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Wheel:
    """A wheel file name split into its parts (PEP 427): ``name-version[-build]-python-abi-platform.whl``."""

    filename: str
    name: str
    version: str
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]

    @property
    def pure(self) -> bool:
        """True for a platform-independent wheel (``any``)."""
        return self.platform_tags == ("any",)


def parse_wheel_name(filename: str) -> Wheel:
    """Split a wheel file name into name, version and compressed tag sets (``cp311``, ``abi3``...)."""
    if not filename.endswith(".whl"):
        raise PackError(f"{filename!r} is not a wheel file name (no .whl)")
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        raise PackError(f"{filename!r} is not a valid wheel file name (expected name-version-python-abi-platform.whl)")
    name, version = parts[0], parts[1]
    py, abi, plat = parts[-3:]
    return Wheel(filename, name.lower().replace("_", "-"), version, tuple(py.split(".")), tuple(abi.split(".")),
                 tuple(plat.split(".")))


def pip_target_args(python: str, platforms: tuple[str, ...]) -> list[str]:
    """pip options that make it resolve for CPython ``python`` on ``platforms`` instead of the host."""
    abi = "cp" + python.replace(".", "")
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", abi]
    for plat in platforms:
        args += ["--platform", plat]
    return args


def _pip(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, env=env)
    except FileNotFoundError:  # pragma: no cover - sys.executable vanished
        raise PackError(f"cannot run pip ({sys.executable} -m pip); install pip for this Python") from None
    except subprocess.TimeoutExpired:
        raise PackError(f"pip {args[0]} took longer than {_PIP_TIMEOUT_S} s; check the network and try again") from None


def _tail(text: str, lines: int = 8) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return "\n".join(kept[-lines:])


def _errors_only(text: str) -> str:
    """pip's ``ERROR:`` lines (the index and link lines before them say nothing about the failure)."""
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR:")]
    return "\n".join(errors) if errors else text


def _explain_failure(proc: subprocess.CompletedProcess, what: str, python: str, platforms: tuple[str, ...]) -> PackError:
    out = proc.stdout + "\n" + proc.stderr
    where = f"CPython {python} on {', '.join(platforms)}"
    for pattern in _NO_MATCH:
        match = pattern.search(out)
        if match:
            req = match.group(1)
            return PackError(
                f"no wheel of {req} for {where}: pip found no built distribution that fits this device. "
                f"Pick another version (--pin), another backend (--backends), or the Python the device runs (--python); "
                f"pip said:\n{_tail(_errors_only(out))}"
            )
    match = _CONFLICT.search(out)
    if match:
        return PackError(
            f"the requirements conflict for {where} ({match.group(1)}); relax a --pin. pip said:\n{_tail(out)}"
        )
    if any(word in out for word in _NETWORK):
        return PackError(
            f"{what} failed: the package index could not be reached (this step runs on the host and needs it; "
            f"the device does not). Check the network / pip index settings and retry. pip said:\n{_tail(out)}"
        )
    return PackError(f"{what} failed for {where} (pip exit code {proc.returncode}); pip said:\n{_tail(out)}")


def download_wheels(requirements: list[str], python: str, platforms: tuple[str, ...], dest: Path) -> list[Wheel]:
    """Download wheels of ``requirements`` and all their dependencies for the device into ``dest``.

    Raises:
        PackError: a package has no wheel for the platform (the message names package and
            platform), the requirements conflict, or the index cannot be reached.
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in dest.glob("*.whl")}
    proc = _pip(["download", *pip_target_args(python, platforms), "--dest", str(dest), *requirements])
    if proc.returncode != 0:
        raise _explain_failure(proc, "downloading wheels", python, platforms)
    return [parse_wheel_name(p.name) for p in sorted(dest.glob("*.whl")) if p.name not in before]


def _project_root() -> Path | None:
    """The source tree edgeode runs from (the directory holding its pyproject.toml), if any."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "edgeode"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def build_edgeode_wheel(dest: Path, wheel: str | Path | None = None) -> Wheel:
    """Put a pure edgeode wheel into ``dest``: a copy of ``wheel`` if given, else built from the source tree.

    The build runs on a copy of ``pyproject.toml``, ``README.md`` and ``edgeode/`` in a temporary
    directory (``pip wheel --no-deps --no-build-isolation``), so it downloads nothing and leaves no
    ``build/`` folder in the checkout.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        src = Path(wheel)
        if not src.is_file():
            raise PackError(f"edgeode wheel {src} not found; build one with `pip wheel --no-deps PATH/TO/edgeode`")
        info = parse_wheel_name(src.name)
        if info.name != "edgeode" or not info.pure:
            raise PackError(f"{src.name} is not a pure edgeode wheel (expected edgeode-VERSION-py3-none-any.whl)")
        shutil.copy2(src, dest / src.name)
        return info
    root = _project_root()
    if root is None:
        raise PackError(
            "cannot build the edgeode wheel: edgeode is not running from its source tree (no pyproject.toml next to "
            "the package). Build a wheel where the source is (`pip wheel --no-deps .`) and pass it with --edgeode-wheel"
        )
    with tempfile.TemporaryDirectory(prefix="edgeode-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "edgeode", src / "edgeode", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out = Path(tmp) / "out"
        proc = _pip(["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(src)])
        built = sorted(out.glob("edgeode-*.whl")) if out.is_dir() else []
        if proc.returncode != 0 or len(built) != 1:
            raise PackError(
                "building the edgeode wheel failed (needs setuptools and wheel on the host: pip install setuptools wheel); "
                f"pip said:\n{_tail(proc.stdout + proc.stderr)}"
            )
        info = parse_wheel_name(built[0].name)
        if not info.pure:
            raise PackError(f"the edgeode wheel {built[0].name} is not pure Python; it cannot run on another platform")
        shutil.copy2(built[0], dest / built[0].name)
        return info


def check_wheels(wheels: list[Wheel], arch: str, platforms: tuple[str, ...]) -> None:
    """Refuse a wheelhouse with torch in it or with a binary wheel built for another platform."""
    torch = [w.filename for w in wheels if w.name in ("torch", "torchvision", "torchaudio") or w.name.startswith("nvidia-")]
    if torch:
        raise PackError(
            f"the wheelhouse would contain {', '.join(torch)}: the device runtime must not need torch. "
            "Remove the requirement that pulls it in (see --pin)"
        )
    wanted = set(platforms)
    foreign = [w.filename for w in wheels if not w.pure and not (set(w.platform_tags) & wanted or
                                                                  any(t.endswith(arch) for t in w.platform_tags))]
    if foreign:
        raise PackError(f"wheels for another platform than {arch} ({', '.join(platforms)}) were fetched: {', '.join(foreign)}")


def check_offline_install(wheel_dir: Path, install_args: list[str], python: str, platforms: tuple[str, ...]) -> None:
    """Prove the device's install command resolves from ``wheel_dir`` alone (pip dry run, no index).

    The host's pip configuration (extra indexes, find-links) is switched off for this check, as the
    device will not have it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory(prefix="edgeode-dryrun-") as target:  # pip wants --target with --platform
        proc = _pip(["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheel_dir),
                     "--target", target, *pip_target_args(python, platforms), *install_args], env=env)
    if proc.returncode != 0:
        err = _explain_failure(proc, "the offline install check", python, platforms)
        raise PackError(
            f"the device could not install from the wheelhouse offline (`pip install --no-index --find-links wheels "
            f"{' '.join(install_args)}`): {err}"
        )
