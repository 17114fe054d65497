"""Property-based fuzz targets (hypothesis) shared by ``tests/test_fuzz.py`` (short budget) and
``benchmarks/fuzz.py`` (the long run).

The property is the same for every target: whatever the input, edgeode either works or raises a
typed :class:`~edgeode.errors.EdgeodeError` (the CLI: exits with a message) — never another
exception (a *traceback*), never a case that runs past :data:`HANG_S` (a *hang*), never a dead
process (a *crash*; model bytes are loaded in a separate worker process so that a crash in a
backend's C++ is seen as one, not as the death of the fuzzer), and for the ``contract`` target never a
loaded model that computes or reports anything other than the unedited bundle (a *lie*).

Targets (each draws real files and runs them through the real readers and backends):

``manifest``  a real bundle's manifest.json with subtrees replaced, deleted or added, or its text
              damaged; read, verified, loaded and run.
``contract``  a hand edit of the computation-defining fields (solver, input, output, kind, an artifact's
              role / precision / batch / tensor specs): a plausible value (a nearby number, another
              tableau or dtype name, a reordered list) or the same one re-written. Loaded in both modes,
              the edit must be refused with a typed error, or change nothing at all: outputs bit-equal
              to the unedited bundle's and the same solver, input, preprocessing and labels reported
              (a *lie* otherwise: the manifest said one thing and the runtime did or said another).
``npy``       real .npy files of random dtype and shape, then bytes flipped or cut; read as ``edgeode run`` does.
``image``     PNG (written by Pillow, every mode; bytes flipped with or without fixing the CRCs,
              IHDR fields overwritten) and PGM (random headers and values); preprocessed and run.
``cli``       ``edgeode run`` (in process, ``edgeode.cli.main``) with random flag values.
``model``     the bundle's ONNX files with bytes flipped / cut (manifest checksums updated so the bytes
              reach the backend); loaded and run in the worker.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeode.errors import EdgeodeError  # noqa: E402

HANG_S = 30.0
"""A case running longer than this is a hang (a tiny model does any legal work in well under that)."""

OUTCOMES = ("ok", "typed", "usage", "traceback", "hang", "crash", "lie")
FAILURES = ("traceback", "hang", "crash", "lie")


class Hang(BaseException):
    """Raised by the alarm inside a case that runs past HANG_S."""


class Lie(Exception):
    """Raised by a ``contract`` case whose edited manifest loaded and changed what is computed or reported."""


@dataclass
class Tally:
    """Cases run per target and outcome, and the first few bad ones in full."""

    counts: Counter = field(default_factory=Counter)
    bad: list[dict] = field(default_factory=list)

    def add(self, target: str, outcome: str, detail: str = "", case: Any = None) -> None:
        self.counts[(target, outcome)] += 1
        if outcome in FAILURES and len(self.bad) < 20:
            self.bad.append({"target": target, "outcome": outcome, "detail": detail[-3000:], "case": repr(case)[:500]})

    def total(self, outcome: str | None = None) -> int:
        return sum(n for (_, o), n in self.counts.items() if outcome is None or o == outcome)


def _alarm(_signum, _frame):
    raise Hang()


def classify(fn, *args) -> tuple[str, str]:
    """Run ``fn(*args)``: ("ok" | "typed" | "usage" | "traceback" | "hang", detail)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        fn(*args)
        return "ok", ""
    except EdgeodeError as exc:
        return "typed", str(exc)
    except SystemExit as exc:  # argparse: a usage error, exit code 2 with a message
        return ("usage", str(exc.code)) if exc.code == 2 else ("traceback", f"SystemExit({exc.code!r})")
    except Hang:
        return "hang", f"over {HANG_S} s"
    except Lie as exc:
        return "lie", str(exc)
    except Exception:
        return "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*prefix, i))
    return out


def mutate_tree(base: Any, edits: list[tuple[int, str, Any]]) -> Any:
    """Apply ``(path index, op, value)`` edits (replace / delete / insert) to a deep copy of ``base``."""
    tree = json.loads(json.dumps(base))
    for index, op, value in edits:
        paths = _paths(tree)
        path = paths[index % len(paths)]
        if not path:
            tree = value if op == "replace" else tree
            continue
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[f"extra{index % 7}"] = value
        else:
            parent.insert(key, value)
    return tree


edits = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["replace", "delete", "insert"]), json_values),
                 min_size=1, max_size=3)


def flip_bytes(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    """``data`` with ``(position, value)`` bytes overwritten and, if ``cut`` is given, truncated there."""
    buf = bytearray(data)
    for pos, val in flips:
        if buf:
            buf[pos % len(buf)] = val
    if cut is not None and buf:
        buf = buf[: cut % (len(buf) + 1)]
    return bytes(buf)


byte_edits = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
                       st.none() | st.integers(0, 1 << 20))

_NAMES = ["rk4", "rk4_38", "euler", "midpoint", "heun", "float32", "float16", "int8-dynamic", "int64", "x", "h", "t",
          "scores", "logits", "fused", "field", "head", "onnx", "tflite", "classifier", "dynamics", "zero", ""]


@st.composite
def near_values(draw, value: Any) -> Any:
    """A value a person editing the manifest by hand might write instead of ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return draw(st.sampled_from([value + 1, value - 1, value * 2, -value, float(value), value + 1e-6, 0, 10**6]))
    if isinstance(value, str):
        return draw(st.sampled_from(_NAMES))
    if value is None:
        return draw(st.sampled_from([0, 1, 2, "x", []]))
    if isinstance(value, list):
        how = draw(st.sampled_from(["reverse", "drop", "repeat", "wrap"]))
        if how == "reverse":
            return value[::-1]
        if how == "drop":
            return value[:-1]
        return value + value[-1:] if how == "repeat" else [value]
    if value:  # a dict: one key removed
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    return {"x": 1}


def contract_paths(manifest: dict) -> list[tuple]:
    """Every path into the computation-defining part of a manifest (see :mod:`edgeode.runtime.contract`)."""
    paths = [p for key in ("kind", "input", "output", "solver") if key in manifest for p in _paths(manifest[key], (key,))]
    for i, art in enumerate(manifest.get("artifacts", [])):
        paths += [p for key in ("role", "format", "precision", "batch", "inputs", "outputs")
                  for p in _paths(art.get(key), ("artifacts", i, key))]
    return paths


def _at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def contract_edits(draw, manifest: dict) -> tuple[list[tuple[tuple, Any]], int | None]:
    """1-3 (path, new value) hand edits of computation-defining fields, and the JSON indent to write with.

    A third of the edits re-write the value the field already has (which must be accepted)."""
    paths = contract_paths(manifest)
    chosen = []
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        old = _at(manifest, path)
        how = draw(st.sampled_from(["same", "near", "near", "any"]))
        new = old if how == "same" else draw(near_values(old)) if how == "near" else draw(json_values)
        chosen.append((path, new))
    return chosen, draw(st.sampled_from([None, 1, 2, 4]))


_DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i8", "|u1", "|b1", "<c8", "|S3", "<U2", "<m8[s]", "|V4"]


@st.composite
def npy_files(draw) -> bytes:
    """A real .npy file (random dtype and shape, sometimes the model's), sometimes damaged, or random bytes."""
    kind = draw(st.sampled_from(["valid", "damaged", "random", "npz"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    shape = draw(st.sampled_from([(1, 1, 6, 6), (3, 1, 6, 6), (1, 6, 6), (0, 1, 6, 6), (2, 36), (), (4,), (2, 1, 5, 6)]))
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8).tobytes()
    arr = np.frombuffer(raw, dtype).reshape(shape) if shape else np.frombuffer(raw, dtype)[0:1].reshape(())
    if dtype.kind == "f" and draw(st.booleans()):
        arr = rng.normal(size=shape).astype(dtype)
    buf = io.BytesIO()
    if kind == "npz":
        np.savez(buf, x=arr)
    else:
        np.save(buf, arr)
    data = buf.getvalue()
    if kind == "damaged":
        flips, cut = draw(byte_edits)
        data = flip_bytes(data, [(p % 128, v) for p, v in flips], cut)  # the header is where parsing happens
    return data


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            return None
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _fix_crcs(data: bytes) -> bytes:
    chunks = _png_chunks(data)
    if chunks is None:
        return data
    out = [data[:8]]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return b"".join(out)


@st.composite
def png_files(draw) -> bytes:
    """A PNG written by Pillow (any mode, sometimes interlaced), then damaged (CRCs fixed or not) or IHDR rewritten."""
    from PIL import Image

    mode = draw(st.sampled_from(["L", "LA", "RGB", "RGBA", "P", "1", "I;16"]))
    w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=draw(st.booleans()), interlace=draw(st.booleans()))
    data = buf.getvalue()
    how = draw(st.sampled_from(["asis", "flip", "flip-fixcrc", "ihdr"]))
    if how == "ihdr":
        width, height = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
        depth, color = draw(st.integers(0, 255)), draw(st.integers(0, 255))
        data = _fix_crcs(data[:16] + struct.pack(">IIBB", width, height, depth, color) + data[26:])
    elif how != "asis":
        flips, cut = draw(byte_edits)
        data = flip_bytes(data, flips, cut)
        if how == "flip-fixcrc":
            data = _fix_crcs(data)
    return data


_pgm_token = st.one_of(st.integers(-5, 70_000).map(str), st.sampled_from(["", "x", "9" * 30, "1e3", "0x10", "#c\n"]))


@st.composite
def pgm_files(draw) -> bytes:
    """PGM headers of random tokens and bodies of random bytes or values (some above maxval, some negative)."""
    magic = draw(st.sampled_from([b"P5", b"P2", b"P6", b"P"]))
    if draw(st.booleans()):
        w, h, maxval = draw(st.integers(0, 8)), draw(st.integers(0, 8)), draw(st.integers(-1, 70_000))
        header = f"{w} {h}\n{maxval}".encode()
    else:
        header = " ".join(draw(st.lists(_pgm_token, min_size=0, max_size=4))).encode()
    sep = draw(st.sampled_from([b"\n", b" ", b"\n# comment\n", b""]))
    if magic == b"P2":
        body = " ".join(draw(st.lists(_pgm_token, max_size=70))).encode()
    else:
        body = draw(st.binary(max_size=150))
    return magic + b"\n" + header + sep + body


image_files = st.one_of(png_files().map(lambda b: ("png", b)), pgm_files().map(lambda b: ("pgm", b)))

_int_flags = st.one_of(st.integers(-3, 12), st.integers(-(2**70), 2**70), st.just(10**100))


@st.composite
def cli_args(draw) -> list[str]:
    """Flags for ``edgeode run BUNDLE INPUT``: known values, near misses, huge and negative numbers."""
    args: list[str] = []
    for flag, values in [
        ("--backend", st.sampled_from(["auto", "onnxruntime", "litert", "tflite-runtime", "onnx", "", "x" * 40])),
        ("--mode", st.sampled_from(["fused", "loop", "both", ""])),
        ("--threads", _int_flags.map(str)),
        ("--steps", st.one_of(st.integers(-2, 300), st.integers(100_001, 2**80), st.just(2**63)).map(str)),
        ("--solver", st.sampled_from(["euler", "rk4", "rk4_38", "midpoint", "heun", "rk5", "", "dopri5"])),
        ("--precision", st.sampled_from(["float32", "float16", "int8-dynamic", "int4"])),
        ("--top", _int_flags.map(str)),
    ]:
        if draw(st.booleans()):
            args += [flag, draw(values)]
    if draw(st.booleans()):
        args.append("--json")
    if draw(st.integers(0, 9)) == 0:
        args.append(draw(st.sampled_from(["--bogus", "-x", "--steps", "--json=1"])))
    return args


# ------------------------------------------------------------------ targets


class Fuzzer:
    """The targets, over one small real bundle (ONNX; TFLite too if the bundle has it)."""

    def __init__(self, bundle: Path, x: np.ndarray, workdir: Path):
        self.bundle, self.x, self.work = Path(bundle), x, Path(workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.manifest = json.loads((self.bundle / "manifest.json").read_text())
        self._worker: subprocess.Popen | None = None
        self._n = 0

    def _fresh(self, name: str) -> Path:
        self._n += 1
        return self.work / f"{name}{self._n % 8}"

    def _copy_bundle(self) -> Path:
        dst = self._fresh("bundle")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.bundle, dst)
        return dst

    # manifest ------------------------------------------------------
    def manifest_case(self, case: tuple[str, Any]) -> None:
        from edgeode.runtime import load

        kind, payload = case
        dst = self._copy_bundle()
        if kind == "tree":
            text = json.dumps(mutate_tree(self.manifest, payload))
        else:
            flips, cut = payload
            text = flip_bytes((self.bundle / "manifest.json").read_bytes(), flips, cut).decode("latin-1")
        (dst / "manifest.json").write_text(text, encoding="latin-1" if kind != "tree" else "utf-8")
        mode = "loop" if self._n % 2 else "fused"
        with contextlib.closing(load(dst, mode=mode)) as model:
            if model.manifest.kind == "classifier":
                model.predict(self.x)
            else:
                model.solve(self.x)

    def manifest_cases(self):
        return st.one_of(edits.map(lambda e: ("tree", e)), byte_edits.map(lambda b: ("bytes", b)))

    def _observed(self, bundle: Path, mode: str) -> tuple[dict, np.ndarray]:
        """What a loaded bundle reports (solver, input with its preprocessing, output with its labels) and computes."""
        from edgeode.runtime import load

        with contextlib.closing(load(bundle, mode=mode)) as model:
            said = {k: v for k, v in model.describe().items() if k not in ("bundle", "contract")}
            man = model.manifest
            said.update(kind=man.kind, input_spec=man.input.to_dict(), output_spec=man.output.to_dict(),
                        solver=man.solver.to_dict() if man.solver else None)
            out = model.predict(self.x) if man.kind == "classifier" else model.solve(self.x)
        return said, np.asarray(out)

    def contract_case(self, case: tuple[list[tuple[tuple, Any]], int | None]) -> None:
        """Hand-edit computation-defining fields; a load that succeeds must observe exactly the unedited bundle."""
        chosen, indent = case
        tree = json.loads(json.dumps(self.manifest))
        for path, value in chosen:  # copies: a "same" value is a subtree of self.manifest, which must not change
            with contextlib.suppress(LookupError, TypeError):  # an earlier edit replaced a parent of this path
                _at(tree, path[:-1])[path[-1]] = copy.deepcopy(value)
        dst = self._copy_bundle()
        (dst / "manifest.json").write_text(json.dumps(tree, indent=indent), encoding="utf-8")
        mode = "loop" if self._n % 2 else "fused"
        if not hasattr(self, "_truth"):
            self._truth = {}
        if mode not in self._truth:
            self._truth[mode] = self._observed(self.bundle, mode)
        said, out = self._observed(dst, mode)
        want_said, want_out = self._truth[mode]
        if said != want_said:
            diff = sorted(k for k in set(said) | set(want_said) if said.get(k) != want_said.get(k))
            raise Lie(f"{mode}: the edited manifest loaded and reports other {diff}: {[said.get(k) for k in diff]} "
                      f"instead of {[want_said.get(k) for k in diff]}")
        if out.shape != want_out.shape or not np.array_equal(out, want_out):
            raise Lie(f"{mode}: the edited manifest loaded and computed other outputs than the unedited bundle")

    def contract_cases(self):
        return contract_edits(self.manifest)

    # input files ----------------------------------------------------
    def _model(self):
        if not hasattr(self, "_loaded"):
            from edgeode.runtime import load

            self._loaded = load(self.bundle)
        return self._loaded

    def npy_case(self, data: bytes) -> None:
        from edgeode.commands.run import _read_input

        path = self._fresh("x").with_suffix(".npy")
        path.write_bytes(data)
        self._model().predict(_read_input(path, self._model()))

    def image_case(self, case: tuple[str, bytes]) -> None:
        import warnings

        from edgeode.commands.run import _read_input

        suffix, data = case
        path = self._fresh("img").with_suffix("." + suffix)
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the inverted-image hint
            self._model().predict(_read_input(path, self._model()))

    # CLI --------------------------------------------------------------
    def cli_case(self, case: tuple[str, list[str]]) -> None:
        from edgeode.cli import main

        inp, args = case
        path = self.work / "cli.npy"
        if not path.exists():
            np.save(path, self.x)
        target = str(path) if inp == "npy" else inp
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(["run", str(self.bundle), target, *args])
        if "Traceback" in err.getvalue() or code not in (0, 2):
            raise AssertionError(f"exit code {code}: {err.getvalue()[-3000:]}")
        if code == 2:  # main() printed "edgeode run: error: ..." for a typed error
            raise EdgeodeError(err.getvalue().strip())

    def cli_cases(self):
        inputs = st.sampled_from(["npy", "missing.npy", "/", "x.txt", "", "-"])
        return st.tuples(inputs, cli_args())

    # model bytes (in a worker process) ------------------------------
    def model_files(self) -> list[str]:
        return [a["path"] for a in self.manifest["artifacts"]]

    def model_case(self, case: tuple[int, tuple]) -> tuple[str, str]:
        """Damage one model file and load + run it in the worker: the outcome, or "crash" if the worker died."""
        index, (flips, cut) = case
        files = self.model_files()
        rel = files[index % len(files)]
        dst = self._copy_bundle()
        data = flip_bytes((self.bundle / rel).read_bytes(), flips, cut)
        (dst / rel).write_bytes(data)
        man = json.loads((dst / "manifest.json").read_text())
        for art in man["artifacts"]:
            if art["path"] == rel:
                art["sha256"], art["size"] = hashlib.sha256(data).hexdigest(), len(data)
        (dst / "manifest.json").write_text(json.dumps(man))
        fmt = next(a["format"] for a in man["artifacts"] if a["path"] == rel)
        request = {"bundle": str(dst), "x": self.x.tolist(), "backend": "onnxruntime" if fmt == "onnx" else "litert",
                   "mode": "loop" if index % 2 else "fused"}
        worker = self._start_worker()
        try:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
            ready, _, _ = select.select([worker.stdout], [], [], HANG_S + 15)
            line = worker.stdout.readline() if ready else None
        except BrokenPipeError:
            line = ""
        if line is None:  # stuck where even the worker's own alarm could not stop it
            worker.kill()
            worker.wait()
            self._worker = None
            return "hang", f"worker gave no answer in {HANG_S + 15} s on {rel}"
        if not line:
            code = worker.wait()
            self._worker = None
            return "crash", f"worker died with exit code {code} on {rel}"
        reply = json.loads(line)
        return reply["outcome"], reply["detail"]

    def _start_worker(self) -> subprocess.Popen:
        if self._worker is None or self._worker.poll() is not None:
            self._worker = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stdin.close()
            self._worker.wait(timeout=30)
        if hasattr(self, "_loaded"):
            self._loaded.close()

    def targets(self) -> dict[str, tuple[Any, Any]]:
        """name -> (strategy, run(case) -> (outcome, detail))."""
        return {
            "manifest": (self.manifest_cases(), lambda c: classify(self.manifest_case, c)),
            "contract": (self.contract_cases(), lambda c: classify(self.contract_case, c)),
            "npy": (npy_files(), lambda c: classify(self.npy_case, c)),
            "image": (image_files, lambda c: classify(self.image_case, c)),
            "cli": (self.cli_cases(), lambda c: classify(self.cli_case, c)),
            "model": (st.tuples(st.integers(0, 100), byte_edits), self.model_case),
        }


def _worker_main() -> None:
    """Load + run damaged bundles sent as JSON lines on stdin; one JSON reply line per request."""
    from edgeode.runtime import load

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a backend prints goes to stderr, not into the reply channel

    def run(req):
        with contextlib.closing(load(req["bundle"], backend=req["backend"], mode=req["mode"], threads=1)) as model:
            x = np.asarray(req["x"], np.float32)
            model.predict(x) if model.manifest.kind == "classifier" else model.solve(x)

    for line in sys.stdin:
        req = json.loads(line)
        outcome, detail = classify(run, req)
        replies.write(json.dumps({"outcome": outcome, "detail": detail[-3000:]}) + "\n")
        replies.flush()


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
