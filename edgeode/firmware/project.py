"""Firmware projects for microcontroller boards from a full-int8 bundle (what ``edgeode pack`` writes).

A project is a PlatformIO directory a user opens and flashes: the bundle's int8 models as aligned
``const`` arrays, one TFLM interpreter per model in its own static arena (the bundle's measured
smallest arena plus :data:`ARENA_MARGIN`), a ``MicroMutableOpResolver`` with exactly the ops the files
use, the fixed-step solver generated from the bundle's tableau (:mod:`edgeode.firmware.solver_c`), and
sample inputs with the outputs the host's TFLM loop gave for them, checked on the board and printed
over serial. Every template is a package data file under ``templates/project``.

Boards (:data:`BOARDS`), with the TFLM library each board's community uses:

* ``nano-33-ble-sense``: Arduino framework, ``spaziochirale/Chirale_TensorFLowLite@2.0.0`` (TFLM with
  CMSIS-NN; the successor of the archived Arduino_TensorFlowLite).
* ``esp32-s3``: ESP-IDF framework, Espressif's ``espressif/esp-tflite-micro`` component (TFLM with ESP-NN;
  the Arduino library TensorFlowLite_ESP32 runs the reference kernels only).

A bundle that does not fit the board (RAM: arenas + RK state + buffers + the runtime's share; flash:
models + code; :func:`edgeode.firmware.fit.mcu_fit`, the computation ``edgeode profile`` reports) is
refused with the figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeode.errors import PackError
from edgeode.firmware.carray import c_array_declaration, c_array_definition
from edgeode.firmware.fit import ARENA_MARGIN, field_inputs, mcu_fit, tensor_elements
from edgeode.firmware.series_c import generate_series
from edgeode.firmware.solver_c import generate_solver
from edgeode.firmware.templates_io import render
from edgeode.firmware.tflite_ops import resolver_method, tflite_ops
from edgeode.runtime.bundle import Bundle
from edgeode.runtime.manifest import Artifact, SeriesSpec

__all__ = ["ARENA_MARGIN", "BOARDS", "Board", "FirmwareProject", "build_project"]

#: Inputs packed as the board's self-check when the user gives none.
DEFAULT_SAMPLES = 4
MAX_SAMPLES = 64


@dataclass(frozen=True)
class Board:
    """How to build firmware for one device profile."""

    device: str
    env: str
    framework: str  # "arduino" or "espidf"
    library: str
    platformio: str  # template
    entry: str  # template of src/main.cpp
    board_include: str  # line(s) at the top of edgeode_firmware.cpp


BOARDS: dict[str, Board] = {
    "nano-33-ble-sense": Board("nano-33-ble-sense", "nano33ble", "arduino", "Chirale_TensorFLowLite 2.0.0",
                               "platformio_nano.ini.in", "main_arduino.cpp", "#include <Chirale_TensorFlowLite.h>\n\n"),
    "esp32-s3": Board("esp32-s3", "esp32-s3", "espidf", "espressif/esp-tflite-micro ^1.4 (with ESP-NN)",
                      "platformio_esp.ini.in", "main_espidf.cpp", ""),
}


@dataclass(frozen=True)
class _Net:
    role: str
    artifact: Artifact
    data: bytes
    ops: tuple[str, ...]
    arena: int  # with the margin

    @property
    def symbol(self) -> str:
        return f"edgeode_{self.role}_tflite"


@dataclass(frozen=True)
class FirmwareProject:
    """A generated project: ``files`` maps relative path -> text, plus the figures it was checked with."""

    board: Board
    files: dict[str, str]
    ops: tuple[str, ...]
    ram_bytes: int
    flash_bytes: int
    arenas: dict[str, int]
    models: dict[str, int]  # role -> bytes
    sample_classes: tuple[int, ...] | None

    def write(self, root: Path) -> None:
        for rel, text in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def _size(shape: tuple[int | None, ...], what: str) -> int:
    return tensor_elements(shape, what, PackError)


def _f(x: float) -> str:
    return float(np.float32(x)).hex() + "f"


def _rows(values: np.ndarray) -> str:
    return ",\n".join("    {" + ", ".join(_f(v) for v in row) + "}" for row in values)


def _default_samples(bundle: Bundle, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    man = bundle.manifest
    if man.kind == "dynamics":
        return rng.uniform(-1.0, 1.0, (DEFAULT_SAMPLES, *shape)).astype(np.float32)
    pre = man.input.preprocess
    raw = rng.uniform(0.0, pre.raw_max, (DEFAULT_SAMPLES, *shape))
    return ((raw * pre.scale - pre.mean) / pre.std).astype(np.float32)


def _host_outputs(bundle: Bundle, samples: np.ndarray, nets: list[tuple[str, Artifact]]) -> np.ndarray:
    """What the host's TFLM loop gives for ``samples``, one at a time (the board runs batch 1)."""
    from edgeode.runtime import load

    mode = "single" if nets[0][0] == "model" else "loop"
    outs = []
    with load(bundle.root, backend="tflm", mode=mode, precision="int8") as model:
        for x in samples:
            y = model.solve(x[None])[-1] if bundle.manifest.kind == "dynamics" else model.predict(x[None])
            outs.append(np.asarray(y, np.float32).reshape(-1))
    return np.stack(outs)


def _cell_inputs(cell: Artifact, spec: SeriesSpec, hidden: int) -> tuple[int, int]:
    """Tensor indices of the GRU cell's sample ``x`` and state ``h`` inputs, by name (``x``, ``h``) or else size."""
    names = [i.name for i in cell.inputs]
    if len(names) != 2:
        raise PackError(f"{cell.path}: a GRU cell takes a sample x and a state h, but its inputs are {names}; re-export")
    if "x" in names and "h" in names:
        return names.index("x"), names.index("h")
    sizes = [_size(tuple(i.shape), f"{cell.path} input {i.name!r}") for i in cell.inputs]
    if sorted(sizes) != sorted((len(spec.channels), hidden)) or len(spec.channels) == hidden:
        raise PackError(f"{cell.path}: cannot tell the cell's sample input from its state input ({names}, sizes "
                        f"{sizes}); re-export the bundle")
    x = sizes.index(len(spec.channels))
    return x, 1 - x


#: Sample series packed into a series firmware: how many, how long, the fraction of grid points dropped, and
#: how many seeded candidates they are picked from (covering as many classes as the candidates reach).
SERIES_SAMPLES, SERIES_LENGTH, SERIES_DROP, SERIES_CANDIDATES = 4, 24, 0.5, 32


def _candidate_series(spec: SeriesSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One seeded sample series ``(times [n] s, raw float32 values [n, channels])``: points of a max_step grid
    with about half left out (gaps of one to several solver steps); per channel a sinusoid of random
    frequency, amplitude and phase plus noise, around the channel's mean in units of its deviation."""
    grid = np.arange(int(SERIES_LENGTH / (1 - SERIES_DROP)))
    times = np.sort(rng.choice(grid, SERIES_LENGTH, replace=False)).astype(np.float64) * spec.max_step
    c = len(spec.channels)
    nyquist = 0.5 / spec.max_step
    freq = rng.uniform(0.02, 0.4, c) * nyquist
    amp, phase = rng.uniform(0.2, 2.0, c), rng.uniform(0, 2 * np.pi, c)
    wave = amp * np.sin(2 * np.pi * freq * times[:, None] + phase) + 0.3 * rng.standard_normal((SERIES_LENGTH, c))
    return times, (np.asarray(spec.mean) + np.asarray(spec.std) * wave).astype(np.float32)


def _sample_series(bundle: Bundle) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """:data:`SERIES_SAMPLES` seeded sample series and the class scores the host's TFLM run of the int8 files
    gives for them, picked from :data:`SERIES_CANDIDATES` candidates so that they reach as many different
    classes as the candidates do (a board that always answered one class would then fail the check)."""
    from edgeode.runtime import load

    rng = np.random.default_rng(0)
    candidates = [_candidate_series(bundle.manifest.series, rng) for _ in range(SERIES_CANDIDATES)]
    with load(bundle.root, backend="tflm", precision="int8") as model:
        scores = [np.asarray(model.predict_series(t, x), np.float32) for t, x in candidates]
    picked: list[int] = []
    seen: set[int] = set()
    for i, sc in enumerate(scores):  # first each new class in candidate order, then the earliest others
        if len(picked) < SERIES_SAMPLES and int(sc.argmax()) not in seen:
            picked.append(i)
            seen.add(int(sc.argmax()))
    picked += [i for i in range(len(candidates)) if i not in picked][: SERIES_SAMPLES - len(picked)]
    picked.sort()
    return [candidates[i] for i in picked], np.stack([scores[i] for i in picked])


def _series_sample_header(values: dict, recordings: list[tuple[np.ndarray, np.ndarray]], expected: np.ndarray,
                          classes: tuple[int, ...] | None) -> str:
    starts = np.cumsum([0, *(len(t) for t, _ in recordings)])
    times = np.concatenate([t for t, _ in recordings])
    raw = np.concatenate([x for _, x in recordings])
    return render("project/edgeode_series_sample.h.in", **values, samples=len(recordings), observations=len(times),
                  starts=", ".join(map(str, starts)), times=",\n".join(f"    {float(t).hex()}" for t in times),
                  values=_rows(raw), expected=_rows(expected), classes=", ".join(map(str, classes or ())))


def build_project(bundle: Bundle, profile, samples: np.ndarray | None = None) -> FirmwareProject:
    """The project for ``profile`` (a microcontroller :class:`~edgeode.devices.profiles.DeviceProfile`).

    ``samples``: preprocessed inputs ``[S, *input shape]`` checked on the board (default: 4 inputs drawn
    with a fixed seed over the input's range). A series bundle (an ODE-RNN) takes none: its firmware streams
    :data:`SERIES_SAMPLES` seeded sample series through the generated observation step
    (:mod:`edgeode.firmware.series_c`) and checks each class against the host's TFLM run. Raises
    :class:`PackError` for a board without a firmware template, a bundle without int8 files, an op TFLM
    lacks, or a bundle that does not fit the board.
    """
    from edgeode import __version__

    board = BOARDS.get(profile.name)
    if board is None:
        raise PackError(f"no firmware template for {profile.name!r} ({profile.display_name}); edgeode pack writes "
                        f"firmware for {', '.join(BOARDS)}")
    man = bundle.manifest
    series = man.kind == "series"
    fit = mcu_fit(man, profile, "loop", PackError)  # picks the files (mcu_nets) and plans their arenas
    if not fit.fits:
        raise PackError(f"the bundle {fit.message}. Use a smaller model (fewer channels) or a board with more "
                        "memory (`edgeode profile BUNDLE --device NAME` says which fit)")
    by_path = {a.path: a for a in man.artifacts}
    picked = [(planned.role, by_path[planned.path]) for planned in fit.nets]
    nets = []
    for (role, art), planned in zip(picked, fit.nets, strict=True):
        path = bundle.path(art)
        data = path.read_bytes()  # once: the C array and the op list
        ops = tuple(dict.fromkeys(op.name for op in tflite_ops(path, data)))
        nets.append(_Net(role, art, data, ops, planned.arena_bytes))
    all_ops = tuple(sorted({op for n in nets for op in n.ops}))
    methods = [resolver_method(op) for op in all_ops]
    first, last = nets[0].artifact, nets[-1].artifact
    input_shape = first.inputs[0].shape if first.role != "field" else None
    state_size = t_input = h_input = 0
    solver_files: dict[str, str] = {}
    solver_ram = 0
    field_net = next((n for n in nets if n.role == "field"), None)
    if field_net is not None:
        fi = field_inputs(field_net.artifact, PackError)
        h_input, t_input, state_size = fi.state, fi.time, fi.state_size
        if series:  # the observation step around the solver (edgeode.firmware.series_c)
            generated = generate_series(man.series, man.solver.tableau)
            solver_files, solver_ram = generated.files(), generated.solver.ram_bytes
        else:
            solver = generate_solver(man.solver.tableau, state_size)
            solver_files, solver_ram = solver.files(), solver.ram_bytes
        if first.role == "field":
            input_shape = field_net.artifact.inputs[h_input].shape
    cell_x = cell_h = -1
    if series:
        cell_x, cell_h = _cell_inputs(next(n for n in nets if n.role == "cell").artifact, man.series, state_size)
        input_shape = (1, len(man.series.channels))
    input_size = _size(tuple(input_shape), f"{first.path} input")
    output_size = _size(tuple(last.outputs[0].shape), f"{last.path} output")
    if series:
        if samples is not None:
            raise PackError("a series bundle checks recorded series on the board, not single inputs: leave out "
                            "--sample (pack draws seeded sample series over the manifest's channel statistics)")
        recordings, expected = _sample_series(bundle)
        samples = np.zeros((len(recordings), 0), np.float32)  # counted below; the series go to the sample header
    else:
        sample_shape = tuple(int(s) for s in input_shape[1:])
        if samples is None:
            samples = _default_samples(bundle, sample_shape)
        samples = np.asarray(samples, np.float32)
        if samples.ndim < 1 or tuple(samples.shape[1:]) != sample_shape or not 1 <= len(samples) <= MAX_SAMPLES:
            raise PackError(f"sample inputs must be [S, {', '.join(map(str, sample_shape))}] with 1 <= S <= {MAX_SAMPLES} "
                            f"(preprocessed, as the model takes them), got {list(samples.shape)}")
        if not np.all(np.isfinite(samples)):
            raise PackError("sample inputs hold NaN or Inf")
        expected = _host_outputs(bundle, samples, picked)
    classifier = man.kind in ("classifier", "series")
    classes = tuple(int(c) for c in expected.argmax(1)) if classifier else None

    # the figures the fit was computed with (edgeode.firmware.fit): one computation for pack and profile
    arenas = {n.role: n.arena for n in nets}
    buffers, reserved, ram, ram_board = fit.buffer_bytes, fit.runtime_ram_bytes, fit.ram_bytes, fit.ram_board_bytes
    models = {n.role: len(n.data) for n in nets}
    flash, flash_board = fit.flash_bytes, fit.flash_board_bytes

    sol = man.solver
    values = dict(version=__version__, bundle_name=bundle.root.name, display_name=profile.display_name,
                  device=profile.name, env=board.env)
    idx = {n.role: i for i, n in enumerate(nets)}
    config = render(
        "project/edgeode_config.h.in", **values, classifier=int(classifier),
        has_encoder=int("encoder" in idx), has_field=int("field" in idx), has_head=int("head" in idx),
        has_model=int("model" in idx), series=int(series), cell_x_input=cell_x, cell_h_input=cell_h,
        net_indices="\n".join(f"#define EDGEODE_NET_{r.upper()} {i}" for r, i in idx.items()),
        nets=len(nets), op_count=len(all_ops), input_size=input_size, output_size=output_size,
        state_size=state_size, field_t_input=t_input, field_h_input=h_input,
        tableau_name=sol.tableau.name if sol else "-", steps=sol.steps if sol else 0,
        t0=repr(float(sol.t0)) if sol else "0.0", t1=repr(float(sol.t1)) if sol else "0.0",
        dt=repr(float((sol.t1 - sol.t0) / sol.steps)) if sol else "0.0", margin_pct=round(ARENA_MARGIN * 100),
        arena_sizes="\n".join(f"#define EDGEODE_ARENA_{n.role.upper()} {n.arena} /* measured {n.artifact.tflm.arena_bytes} */"
                              for n in nets),
    )
    firmware = render(
        "project/edgeode_firmware.cpp.in", **values, board_include=board.board_include,
        model_doc=("an ODE-Net: int8 encoder, field and head around a float32 RK loop" if "encoder" in idx else
                   "an ODE-RNN: per observation the int8 field in a float32 RK loop across the gap, then the int8 "
                   "GRU cell; the int8 head classifies the stream" if series else
                   "a dynamics model: the int8 field inside a float32 RK loop" if "field" in idx else "an int8 network"),
        tableau_name=sol.tableau.name if sol else "-",
        arenas="\n".join(f"alignas(16) uint8_t arena_{n.role}[EDGEODE_ARENA_{n.role.upper()}];" for n in nets),
        nets=",\n".join(f'    {{"{n.role}", {n.symbol}, arena_{n.role}, sizeof arena_{n.role}, nullptr}}' for n in nets),
        resolver_calls="\n".join(f"    resolver.{m}();" for m in methods),
    )
    if classifier:
        tol, tol_doc = "0.0f", "A classifier sample agrees when its argmax equals the host's."
    else:
        field_out = field_net.artifact.outputs[0].quantization
        lsb = field_out.scale if field_out is not None else 1e-6
        tolerance = 3 * lsb * abs(sol.t1 - sol.t0)
        tol = _f(tolerance)
        tol_doc = (f"A dynamics sample agrees when every state value is within {tolerance:.3g} of the host's: 3 LSB of "
                   f"the field's int8 output ({lsb:.3g}) integrated over t1 - t0 = {abs(sol.t1 - sol.t0):g} (the board's "
                   "TFLM may round an op differently by one LSB).")
    if series:
        sample = _series_sample_header(values, recordings, expected, classes)
    else:
        sample = render("project/edgeode_sample.h.in", **values, samples=len(samples), tolerance=tol,
                        tolerance_doc=tol_doc, inputs=_rows(samples.reshape(len(samples), -1)), expected=_rows(expected),
                        classes=", ".join(map(str, classes)) if classes else ", ".join("0" for _ in samples))
    models_h = "\n".join(["/* edgeode_models.h: the bundle's int8 models as const arrays (generated by edgeode pack). */",
                          "#ifndef EDGEODE_MODELS_H", "#define EDGEODE_MODELS_H", "",
                          *(c_array_declaration(n.symbol) for n in nets), "", "#endif", ""])
    models_cpp = "\n".join([f"/* edgeode_models.cpp: {', '.join(n.artifact.path for n in nets)} byte for byte. */",
                            '#include "edgeode_models.h"', "", *(c_array_definition(n.symbol, n.data) for n in nets)])
    sources = ["main.cpp", "edgeode_firmware.cpp", "edgeode_models.cpp", "edgeode_quant.c", *sorted(
        n for n in solver_files if n.endswith(".c"))]
    files = {
        "platformio.ini": render(f"project/{board.platformio}", **values),
        "src/main.cpp": render(f"project/{board.entry}"),
        "src/edgeode_firmware.h": render("project/edgeode_firmware.h"),
        "src/edgeode_firmware.cpp": firmware,
        "src/edgeode_config.h": config,
        "src/edgeode_sample.h": sample,
        "src/edgeode_models.h": models_h,
        "src/edgeode_models.cpp": models_cpp,
        "src/edgeode_quant.h": render("project/edgeode_quant.h"),
        "src/edgeode_quant.c": render("project/edgeode_quant.c"),
        **{f"src/{k}": v for k, v in solver_files.items()},
    }
    extra_doc = ""
    if series:
        extra_doc = ("| `src/edgeode_series.c` | the observation step: normalise the raw sample, solve across the gap in "
                     f"steps of at most {man.series.max_step:g} s, GRU cell; `edgeode_series_start`, `edgeode_observe`, "
                     "`edgeode_classify` (`src/edgeode_firmware.h`) |\n")
    if board.framework == "espidf":
        files["CMakeLists.txt"] = render("project/CMakeLists_root.txt")
        files["src/CMakeLists.txt"] = render("project/CMakeLists_src.txt.in", sources=" ".join(f'"{s}"' for s in sources))
        files["src/idf_component.yml"] = render("project/idf_component.yml")
        files["sdkconfig.defaults"] = render("project/sdkconfig.defaults")
        extra_doc += ("| `CMakeLists.txt`, `src/CMakeLists.txt` | the ESP-IDF project and main component |\n"
                     "| `src/idf_component.yml` | `espressif/esp-tflite-micro` for the IDF component manager |\n"
                     "| `sdkconfig.defaults` | a 16 KB main task stack for TFLM |\n")
    if series:
        lines = [f"    sample {s}: class {c} (host {c}) ok, max |score - host| ... ({len(recordings[s][0])} observations)"
                 for s, c in enumerate(classes)]
    elif classes is not None:
        lines = [f"    sample {s}: class {c} (host {c}) ok, max |score - host| ..." for s, c in enumerate(classes)]
    else:
        lines = [f"    sample {s}: max |h(t1) - host| ... (tolerance ...) ok" for s in range(len(samples))]
    expected_output = "\n".join(["After one `edgeode: NAME ready, arena ...` line per model:", "",
                                 *lines, f"    edgeode: {len(samples)} of {len(samples)} samples agree with the host TFLM run"])
    rows = ["| model | file | bytes | ops | arena (measured + margin) |", "|---|---|---:|---|---:|"]
    rows += [f"| {n.role} | `{n.artifact.path}` | {len(n.data):,} | {', '.join(n.ops)} | {n.artifact.tflm.arena_bytes:,} → "
             f"{n.arena:,} |" for n in nets]
    files["README.md"] = render(
        "project/README.md.in", **values, library=board.library,
        framework_doc=(f"the Arduino framework with {board.library} (`lib_deps`)." if board.framework == "arduino" else
                       f"the ESP-IDF framework with {board.library} from the IDF component registry."),
        expected_output=expected_output, tolerance_doc=tol_doc,
        entry_doc="the Arduino sketch: `setup()` runs the samples once" if board.framework == "arduino"
        else "`app_main`: runs the samples once",
        tableau_name=sol.tableau.name if sol else "-", extra_files=extra_doc, models_table="\n".join(rows),
        op_count=len(all_ops), ops=", ".join(f"`{m}()`" for m in methods), margin_pct=round(ARENA_MARGIN * 100),
        arena_total=f"{sum(arenas.values()):,}", solver_ram=f"{solver_ram:,}", buffers=f"{buffers:,}",
        ram_total=f"{ram:,}", ram_board=f"{ram_board:,}", ram_reserved=f"{reserved:,}",
        models_total=f"{sum(models.values()):,}", code_estimate=f"{fit.runtime_flash_bytes:,}",
        code_source=profile.sources.get("mcu.runtime_flash_bytes", "estimate"), flash_total=f"{flash:,}",
        flash_board=f"{flash_board:,}",
    )
    record = {
        "device": profile.name, "board": board.env, "framework": board.framework, "library": board.library,
        "edgeode": __version__, "bundle": bundle.root.name,
        "models": [{"role": n.role, "path": n.artifact.path, "sha256": n.artifact.sha256, "bytes": len(n.data),
                    "symbol": n.symbol, "ops": list(n.ops), "arena_measured": n.artifact.tflm.arena_bytes,
                    "arena": n.arena} for n in nets],
        "ops": list(all_ops), "resolver": methods, "arena_margin": ARENA_MARGIN,
        "solver": {"tableau": sol.tableau.name, "steps": sol.steps, "t0": sol.t0, "t1": sol.t1,
                   "state_size": state_size, "ram_bytes": solver_ram} if field_net is not None and not series else None,
        "series": {"tableau": sol.tableau.name, "max_step": man.series.max_step, "hidden": state_size,
                   "channels": list(man.series.channels), "ram_bytes": solver_ram,
                   "sample_observations": [len(r[0]) for r in recordings]} if series else None,
        "ram_bytes": ram, "flash_bytes": flash, "samples": len(samples), "sample_classes": list(classes or []),
    }
    files["edgeode-pack.json"] = json.dumps(record, indent=2) + "\n"
    return FirmwareProject(board, files, all_ops, ram, flash, arenas, models, classes)
