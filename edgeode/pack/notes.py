"""The human-facing files of a device package: README, run script, and the Android integration note.

Every figure in these texts (tensor names, shapes, dtypes, preprocessing, labels, solver) is read
from the bundle's manifest, so the note cannot drift from the model it describes.

No torch.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from edgeode.runtime.manifest import Artifact, Manifest, TensorSpec

__all__ = ["PythonPackInfo", "python_readme", "run_script", "android_note", "describe_model", "preprocess_text"]


@dataclass(frozen=True)
class PythonPackInfo:
    """What the README and run script of a Python-device package need to say."""

    device: str
    display_name: str
    arch: str
    python: str
    platforms: tuple[str, ...]
    backends: tuple[str, ...]
    install_args: tuple[str, ...]
    wheels: tuple[str, ...]
    edgeode_version: str
    os_notes: str
    package_name: str = "package"


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in spec.shape) + "]"


def describe_model(manifest: Manifest, artifact: Artifact | None = None) -> str:
    """One paragraph: architecture, kind, input and output tensors, solver.

    With ``artifact`` (e.g. a fixed-batch TFLite file) its own tensor shapes are shown, not the
    manifest's dynamic-batch ones.
    """
    arch = manifest.model.get("arch", "?")
    inp, out = manifest.input.tensor, manifest.output.tensor
    if artifact is not None:
        inp, out = artifact.inputs[0], artifact.outputs[0]
    text = (
        f"Model: `{arch}` {manifest.kind}; input `{inp.name}` {_shape(inp)} {inp.dtype}, "
        f"output `{out.name}` {_shape(out)} {out.dtype}."
    )
    if manifest.solver is not None:
        s = manifest.solver
        text += f" Solver: {s.tableau.name}, {s.steps} fixed steps over [{s.t0:g}, {s.t1:g}]."
    if manifest.output.labels:
        text += f" Labels: {', '.join(manifest.output.labels)}."
    return text


def preprocess_text(manifest: Manifest) -> str:
    """How a raw input becomes the model input, as a short Markdown list (the steps of
    :func:`edgeode.runtime.preprocess_image`, in its order)."""
    p = manifest.input.preprocess
    lines = []
    if p.image_size is not None:
        lines.append(f"- convert to grey if the model has 1 channel (BT.601 luma), resize to {p.image_size[0]} x "
                     f"{p.image_size[1]} pixels (height x width);")
        lines.append(f"- scale pixels to 0..{p.raw_max:g}: `raw = pixel * {p.raw_max:g} / 255` for an 8-bit image;")
    if p.invert:
        lines.append(f"- invert intensities: `raw = {p.raw_max:g} - raw`;")
    lines.append(f"- the model input is `x = (raw * {p.scale:g} - {p.mean:g}) / {p.std:g}`, float32 (raw on a "
                 f"0..{p.raw_max:g} scale);")
    shape = manifest.input.tensor.shape
    if len(shape) == 4:
        lines.append("- layout NCHW: batch, channel, row, column (row-major, as a flat float array in that order).")
    return "\n".join(lines)


def python_readme(info: PythonPackInfo, manifest: Manifest) -> str:
    """README.md of a package for a Linux device with Python."""
    install = " ".join(shlex.quote(a) for a in info.install_args)
    wheels = "\n".join(f"    {w}" for w in info.wheels)
    example = (
        "edgeode run bundle IMAGE.png        # a PNG/PGM image, or a .npy array of model inputs"
        if manifest.input.preprocess.image_size
        else "edgeode run bundle INPUT.npy        # a .npy array of model inputs"
    )
    return f"""# edgeode package for {info.display_name} (`{info.device}`)

{describe_model(manifest)}

Built with edgeode {info.edgeode_version} for CPython {info.python} on {info.arch}
(pip platforms: {', '.join(info.platforms)}). Backends: {', '.join(info.backends)}.
Nothing is downloaded on the device, and torch is not needed there.

    bundle/     the exported model (manifest.json + model files, checksums verified when packed)
    wheels/     every Python package the device needs, as {info.arch} wheels
    run.sh      installs on first use, then runs edgeode on the bundle
    PACKED      what was packed: device, Python, pip platforms, backends, edgeode version, date

## Install on the device (offline)

Copy this directory to the device (for example `scp -r {info.package_name} pi@raspberrypi.local:`),
check that `python3 --version` says {info.python}, then in the directory:

```bash
python3 -m venv .venv        # Raspberry Pi OS refuses system-wide pip installs (PEP 668)
.venv/bin/pip install --no-index --find-links wheels {install}
```

(`./run.sh install` does the same.) If `python3 -m venv` is missing: `sudo apt install python3-venv`.

## Run

```bash
.venv/bin/{example}
```

or `./run.sh run INPUT [OPTIONS]` (`edgeode run --help` lists backend, mode, threads...). From Python:

```python
import numpy as np
from edgeode.runtime import load
model = load("bundle", backend="{info.backends[0]}")      # mode="fused" (default) or "loop"
x = np.load("input.npy").astype(np.float32)   # shaped like the input above
print(model.predict(x))
```

## Profile (memory, latency, energy proxy) on this device

```bash
.venv/bin/edgeode profile bundle --device {info.device}
```

or `./run.sh profile [OPTIONS]`. Until this board is calibrated the time figures are estimates scaled
from the profile; `.venv/bin/edgeode devices calibrate --save {info.device} --like {info.device}` run once on
the board saves a measured profile (it overrides the shipped one here), and profiles then report measured times.

## Preprocessing

{preprocess_text(manifest)}

## Device notes

{info.os_notes}

## Wheels

{wheels}
"""


def run_script(info: PythonPackInfo) -> str:
    """run.sh: ``install`` (offline, into ./.venv), ``run ARGS``, ``profile ARGS``."""
    install = " ".join(shlex.quote(a) for a in info.install_args)
    return f"""#!/bin/sh
# Run the packed edgeode model on {info.display_name}. Nothing is downloaded.
#   ./run.sh install           install edgeode and its wheels into ./.venv (offline)
#   ./run.sh run INPUT [OPTIONS]  edgeode run bundle INPUT [OPTIONS] (installs first if needed)
#   ./run.sh profile [OPTIONS] edgeode profile bundle --device {info.device} [OPTIONS]
set -eu
cd "$(dirname "$0")"
install() {{
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv || {{ echo "run.sh: python3 -m venv failed; try: sudo apt install python3-venv" >&2; exit 1; }}
    fi
    .venv/bin/pip install --no-index --find-links wheels {install}
}}
cmd="${{1:-run}}"
[ $# -gt 0 ] && shift
case "$cmd" in
    install) install ;;
    run) [ -x .venv/bin/edgeode ] || install; exec .venv/bin/edgeode run bundle "$@" ;;
    profile) [ -x .venv/bin/edgeode ] || install; exec .venv/bin/edgeode profile bundle --device {info.device} "$@" ;;
    *) echo "usage: ./run.sh [install|run|profile] [OPTIONS]" >&2; exit 2 ;;
esac
"""


_KOTLIN_TYPES = {"float32": ("FloatArray", "Float", "float"), "int32": ("IntArray", "Int", "int"),
                 "int64": ("LongArray", "Long", "long"), "uint8": ("ByteArray", "Byte", "byte"),
                 "float16": ("FloatArray", "Float", "float")}


def _kotlin_array(spec: TensorSpec) -> str:
    """A Kotlin expression allocating a nested array of the tensor's shape (batch 1 if dynamic)."""
    dims = [1 if d is None else d for d in spec.shape] or [1]
    inner = f"{_KOTLIN_TYPES.get(spec.dtype, _KOTLIN_TYPES['float32'])[0]}({dims[-1]})"
    for d in reversed(dims[:-1]):
        inner = f"Array({d}) {{ {inner} }}"
    return inner


def _java_array(spec: TensorSpec) -> str:
    dims = [1 if d is None else d for d in spec.shape] or [1]
    base = _KOTLIN_TYPES.get(spec.dtype, _KOTLIN_TYPES["float32"])[2]
    return f"new {base}" + "".join(f"[{d}]" for d in dims)


def android_note(manifest: Manifest, art: Artifact, device: str, display_name: str, filename: str) -> str:
    """The integration note for an Android app: tensors, preprocessing and the one-call Interpreter API."""
    inputs = "\n".join(f"| input {i} | `{s.name}` | {_shape(s)} | {s.dtype} |" for i, s in enumerate(art.inputs))
    outputs = "\n".join(f"| output {i} | `{s.name}` | {_shape(s)} | {s.dtype} |" for i, s in enumerate(art.outputs))
    single = len(art.inputs) == 1 and len(art.outputs) == 1
    kin, kout = _kotlin_array(art.inputs[0]), _kotlin_array(art.outputs[0])
    jin, jout = _java_array(art.inputs[0]), _java_array(art.outputs[0])
    dims_in = len(art.inputs[0].shape) or 1
    dims_out = len(art.outputs[0].shape) or 1
    jtype_in = _KOTLIN_TYPES.get(art.inputs[0].dtype, _KOTLIN_TYPES["float32"])[2] + "[]" * dims_in
    jtype_out = _KOTLIN_TYPES.get(art.outputs[0].dtype, _KOTLIN_TYPES["float32"])[2] + "[]" * dims_out
    multi = "" if single else (
        "\nThis model has several inputs or outputs: use "
        "`interpreter.runForMultipleInputsOutputs(arrayOf(in0, in1, ...), mapOf(0 to out0, ...))` "
        "in the order of the tables above.\n"
    )
    batch = art.batch if art.batch is not None else "dynamic"
    solver = ""
    if manifest.solver is not None:
        s = manifest.solver
        solver = (f"\nThe whole ODE solve ({s.tableau.name}, {s.steps} fixed steps over [{s.t0:g}, {s.t1:g}]) is inside "
                  "this one file, so one `run` call is one complete inference; nothing else needs porting.\n")
    labels = ""
    if manifest.output.labels:
        labels = ("\nOutput index -> label: " + ", ".join(f"{i}={lab}" for i, lab in enumerate(manifest.output.labels))
                  + ". The outputs are class scores (logits): the predicted class is the index of the largest.\n")
    return f"""# {filename} for {display_name} (`{device}`): Android integration note

{describe_model(manifest, art)}

`{filename}` is the whole model as one TensorFlow Lite flatbuffer ({art.precision}, batch {batch},
{art.size} bytes, sha256 `{art.sha256}`). `manifest.json` beside it describes it (this directory is
itself an edgeode bundle: `edgeode run` on a desktop runs it for comparison). At export its outputs
matched PyTorch within {art.parity_max_abs:.2g} (tolerance {art.parity_tolerance:.2g}).
{solver}
## Tensors

| | name | shape | dtype |
|---|---|---|---|
{inputs}
{outputs}
{labels}
## Preprocessing (do this in the app before `run`)

{preprocess_text(manifest)}

## The one call (LiteRT Interpreter API)

Put `{filename}` in `app/src/main/assets/`, and in `app/build.gradle.kts`:

```kotlin
android {{ androidResources {{ noCompress += "tflite" }} }}   // so the model can be memory-mapped
dependencies {{ implementation("com.google.ai.edge.litert:litert:1.4.1") }}  // LiteRT (formerly TensorFlow Lite)
```

Kotlin:

```kotlin
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.channels.FileChannel

val fd = context.assets.openFd("{filename}")
val model = FileInputStream(fd.fileDescriptor).channel
    .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
val interpreter = Interpreter(model)          // create once, reuse for every inference

val input = {kin}     // fill with preprocessed values
val output = {kout}
interpreter.run(input, output)                // one call: the whole model
```

Java:

```java
Interpreter interpreter = new Interpreter(modelBuffer);   // MappedByteBuffer of assets/{filename}
{jtype_in} input = {jin};
{jtype_out} output = {jout};
interpreter.run(input, output);
```
{multi}
`Interpreter` is not thread-safe: use one per thread, and `interpreter.close()` when done.
Newer LiteRT releases (2.x) also offer the `CompiledModel` API for GPU/NPU; this file works with both.
"""
