"""Proof on aarch64: a `pack`ed Raspberry Pi package installs offline into an arm64 Debian bookworm
userland (what Raspberry Pi OS 64-bit is built on, CPython 3.11) and gives the x86 numbers there.

How: ``.ci/aarch64-setup.sh`` installs qemu-user-static and mmdebstrap and builds a minimal arm64
sysroot (cached under $EDGEODE_ARM64_SYSROOT, default /var/tmp/edgeode-arm64/sysroot) with a
Cortex-A72 (Pi 4) /proc/cpuinfo, since onnxruntime crashes under qemu 7.2 reading the host's x86 one.
The package's wheelhouse is installed on the host with pip's cross-platform options into a
``--target`` folder, exactly as resolved offline (``--no-index --find-links wheels``); the arm64
CPython then runs ``edgeode.runtime`` from it under ``qemu-aarch64-static -L SYSROOT`` with
``QEMU_CPU=cortex-a72`` (no instructions a Pi 4 lacks). Under emulation, timings are the
emulator's: this test checks correctness only.

It runs only when asked, ``EDGEODE_TEST_AARCH64=1`` (``.ci/run`` sets it), because as root it
installs packages with apt-get and writes the sysroot outside the test's temporary directories;
otherwise it is skipped with that reason. Asked for, if the emulation tools cannot be installed
(not root, no package registry) the test is skipped with that reason; in CI (CI=true) it fails instead.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / ".ci" / "aarch64-setup.sh"
SYSROOT = Path(os.environ.get("EDGEODE_ARM64_SYSROOT", "/var/tmp/edgeode-arm64/sysroot"))
STAMP = SYSROOT / ".edgeode-sysroot-ok"
DEVICE = "pi-4b"
CASES = [("onnxruntime", "fused"), ("onnxruntime", "loop"), ("litert", "fused"), ("litert", "loop")]

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"aarch64 proof cannot run in CI: {reason}")
    pytest.skip(reason)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _host_env() -> dict:
    """The host's environment without pip configuration (the device has none) and Python overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


ASK = "EDGEODE_TEST_AARCH64"


@pytest.fixture(scope="module")
def emulator() -> list[str]:
    """The command prefix that runs the arm64 CPython 3.11 (natively on an aarch64 host)."""
    if os.environ.get(ASK) != "1":
        pytest.skip(f"the arm64 emulation test runs only when asked: {ASK}=1 (as root it apt-get installs "
                    f"qemu-user-static and mmdebstrap and builds a sysroot in {SYSROOT.parent}); .ci/run sets it")
    if platform.machine() == "aarch64" and Path("/usr/bin/python3.11").is_file():
        return ["/usr/bin/python3.11"]
    qemu = shutil.which("qemu-aarch64-static")
    if not (qemu and STAMP.is_file()):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            _unavailable("qemu-user-static and the arm64 sysroot are missing and cannot be installed here "
                         "(needs root and apt-get): run `sudo bash .ci/aarch64-setup.sh`")
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            _unavailable(f"`bash .ci/aarch64-setup.sh` failed (package registry unreachable?):\n{_tail(proc.stderr)}")
        qemu = shutil.which("qemu-aarch64-static")
    if not qemu:
        _unavailable("qemu-aarch64-static is not on PATH after .ci/aarch64-setup.sh")
    return [qemu, "-L", str(SYSROOT), str(SYSROOT / "usr" / "bin" / "python3.11")]


def _arm_env(site: Path, home: Path) -> dict:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "QEMU_CPU": "cortex-a72",
        "PYTHONPATH": str(site),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


@pytest.fixture(scope="module")
def installed(emulator, digits_bundle, tmp_path_factory):
    """The pi-4b package of a real bundle, installed offline from its wheelhouse for arm64."""
    from edgeode.pack import pack
    from edgeode.pack.wheelhouse import pip_target_args

    bundle = digits_bundle
    work = tmp_path_factory.mktemp("aarch64")
    result = pack(bundle, DEVICE, work / "pkg", progress=False)
    site = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(result.out_dir / "wheels"),
           *pip_target_args(result.python, result.platforms), "--target", str(site), "--no-compile", "--quiet"]
    proc = subprocess.run([*cmd, *result.install_args], capture_output=True, text=True, env=_host_env(), timeout=600)
    assert proc.returncode == 0, f"offline install of the wheelhouse failed:\n{_tail(proc.stdout + proc.stderr)}"
    return result, site, work


ARM_SCRIPT = textwrap.dedent("""
    import json, platform, sys
    import numpy as np
    import edgeode, edgeode.runtime
    from edgeode.runtime import load
    bundle, x_path, out_path, cases = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        import torch  # noqa: F401
        has_torch = True
    except ImportError:
        has_torch = False
    x = np.load(x_path)
    outputs = {}
    for backend, mode in cases:
        model = load(bundle, backend=backend, mode=mode)
        outputs[backend + "-" + mode] = model.predict(x)
        model.close()
    np.savez(out_path, **outputs)
    import contextlib, io
    import onnxruntime, ai_edge_litert  # noqa: F401
    from edgeode.cli import main
    from edgeode.devices.hostinfo import detect_emulation
    cli_out = io.StringIO()
    with contextlib.redirect_stdout(cli_out):  # the README's run command, in-process
        cli_rc = main(["run", bundle, x_path, "--json"])
    import PIL
    from edgeode.runtime.image import read_png
    png = read_png(sys.argv[5]).tolist()  # decoded by the packed aarch64 Pillow wheel
    print(json.dumps({"png": png, "pillow": PIL.__file__, "cli_rc": cli_rc, "cli": json.loads(cli_out.getvalue()), "emulation": detect_emulation(),"machine": platform.machine(), "python": platform.python_version(), "has_torch": has_torch,
                      "edgeode": edgeode.__file__, "numpy": np.__file__, "numpy_version": np.__version__,
                      "onnxruntime": onnxruntime.__version__, "edgeode_in_sys_modules_torch": "torch" in sys.modules}))
""")


def test_pack_runs_on_arm64_like_on_x86(emulator, installed, digits_run):
    """onnxruntime and LiteRT, fused and loop: arm64 outputs equal the x86 ones within float tolerance."""
    from margins import assert_same_class_where_decided

    from edgeode.runtime import load

    result, site, work = installed
    bundle = result.out_dir / "bundle"
    x = digits_run.x[:3]
    np.save(work / "x.npy", x)
    script = work / "arm_run.py"
    script.write_text(ARM_SCRIPT, encoding="utf-8")
    from PIL import Image

    from edgeode.runtime.image import read_png

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(work / "img.png")
    proc = subprocess.run([*emulator, str(script), str(bundle), str(work / "x.npy"), str(work / "arm.npz"),
                           json.dumps(CASES), str(work / "img.png")], capture_output=True, text=True,
                          env=_arm_env(site, work), timeout=600)
    assert proc.returncode == 0, f"the arm64 run failed (exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr, 30)}"
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["machine"] == "aarch64"
    assert facts["python"].startswith(result.python + ".")
    assert not facts["has_torch"] and not facts["edgeode_in_sys_modules_torch"]
    assert facts["edgeode"].startswith(str(site)) and facts["numpy"].startswith(str(site))  # the packed wheels
    # Timings here are the emulator's: edgeode must know it is emulated (profile then reports no device figures).
    assert facts["emulation"], "detect_emulation() missed QEMU user-mode emulation"
    assert facts["cli_rc"] == 0 and facts["cli"]["backend"] == "onnxruntime", facts["cli"]
    assert facts["pillow"].startswith(str(site))  # Pillow came from the wheelhouse (edgeode[device] needs it)
    np.testing.assert_array_equal(np.array(facts["png"], np.uint8), read_png(work / "img.png"))
    arm = np.load(work / "arm.npz")
    for backend, mode in CASES:
        host = load(bundle, backend=backend, mode=mode).predict(x)
        got = arm[f"{backend}-{mode}"]
        assert got.shape == host.shape == (3, 10)
        np.testing.assert_allclose(got, host, rtol=1e-4, atol=1e-4, err_msg=f"{backend} {mode}: arm64 vs x86")
        # arm64 rounds differently (FMA): classes are compared only where the margin exceeds the tolerance
        assert_same_class_where_decided(got, host, 1e-4 * (1 + float(np.abs(host).max())), f"{backend} {mode}")
        if (backend, mode) == ("onnxruntime", "fused"):
            scores = np.array([p["logits"] for p in facts["cli"]["predictions"]])
            np.testing.assert_allclose(scores, host, rtol=1e-4, atol=1e-4, err_msg="run --json on arm64")
            assert [p["class"] for p in facts["cli"]["predictions"]] == scores.argmax(1).tolist()
