"""Hostile input files and paths: each gives a typed error naming the problem (issue 11, found 4 and 5), fast.

Every file here is a real file on disk read by the real readers (Pillow for PNG); the CLI cases run
``edgeode`` in a real subprocess.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import BundleError, DataError, InputWarning  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402
from edgeode.runtime.image import MAX_IMAGE_PIXELS, load_image, read_png  # noqa: E402
from edgeode.runtime.manifest import Manifest  # noqa: E402
from edgeode.runtime.npy import read_npy, read_npz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, depth: int = 8, color: int = 0, idat: bytes | None = None,
              ihdr: bytes | None = None) -> bytes:
    """A PNG file's bytes; ``idat`` defaults to all-zero rows of filter type 0."""
    if ihdr is None:
        ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * (height * (1 + width)))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# ------------------------------------------------------------------ .npy


def test_npz_renamed_npy(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros(3, np.float32))
    shutil.copy(tmp_path / "x.npz", tmp_path / "x.npy")
    with pytest.raises(DataError, match=r"x.npy is an .npz archive.*numpy.save"):
        read_npy(tmp_path / "x.npy")


def test_npy_header_claiming_1e12_elements_is_refused_at_once(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    (tmp_path / "big.npy").write_bytes(buf.getvalue() + b"\x00" * 16)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"shape \[1000000000000\].*holds only 16 bytes.*truncated"):
        read_npy(tmp_path / "big.npy")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("header, match", [
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'}  \n", "corrupt .npy header"),
    (b"\x93NUMPY\x09\x00\x10\x00{}              \n", "corrupt .npy header"),
    (b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"9" * 20 + b",)}\n",
     "corrupt .npy header|truncated"),
    (b"\x93NUMPY", "corrupt .npy header"),
    (b"", "not a readable .npy file"),
])
def test_npy_damaged_headers(tmp_path, header, match):
    (tmp_path / "h.npy").write_bytes(header)
    with pytest.raises(DataError, match=match):
        read_npy(tmp_path / "h.npy")


def test_npy_object_array_is_never_unpickled(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects.*pickled"):
        read_npy(tmp_path / "o.npy")


# ------------------------------------------------------------------ .npz


def test_npz_arrays_round_trip_fortran_order_empty_and_scalar(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    np.savez_compressed(tmp_path / "a.npz", a=a, f=np.asfortranarray(a), e=np.zeros((0, 6), np.float32), s=np.int64(7))
    got = read_npz(tmp_path / "a.npz", "fix")
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["f"], a)
    assert got["e"].shape == (0, 6) and got["e"].dtype == np.float32 and got["s"] == 7


def _bytes_read(monkeypatch) -> list[int]:
    """Every byte count a zip member's reader hands out from now on (read and readinto), to prove what is not read."""
    import zipfile

    counts: list[int] = []
    read, readinto = zipfile.ZipExtFile.read, zipfile.ZipExtFile.readinto

    def counted_read(self, n=-1):
        data = read(self, n)
        counts.append(len(data))
        return data

    def counted_readinto(self, b):
        n = readinto(self, b)
        counts.append(n)
        return n

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counted_read)
    monkeypatch.setattr(zipfile.ZipExtFile, "readinto", counted_readinto)
    return counts


def test_npz_bomb_is_refused_from_the_member_header_before_inflating(tmp_path, monkeypatch):
    """128 MiB of zeros compresses to about 130 KB: the member's header is refused before its data is inflated
    (nothing past the header is read), and a member that is not asked for is never read at all."""
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros(2**25, np.float32), keep=np.arange(3.0))
    counts = _bytes_read(monkeypatch)
    with pytest.raises(DataError, match=r"array 'x' has shape \[33554432\].*above the limit"):
        read_npz(tmp_path / "bomb.npz", "fix", max_bytes=2**20)
    assert sum(counts) < 4096, counts
    counts.clear()
    got = read_npz(tmp_path / "bomb.npz", "fix", names=("keep",), max_bytes=2**20)
    assert list(got) == ["keep"] and sum(counts) < 4096, counts


def test_npz_arrays_together_are_bounded_and_other_members_ignored(tmp_path):
    import zipfile

    np.savez(tmp_path / "two.npz", a=np.zeros(100, np.float64), b=np.zeros(100, np.float64))
    with zipfile.ZipFile(tmp_path / "two.npz", "a") as z:
        z.writestr("notes.txt", "not an array")
    assert sorted(read_npz(tmp_path / "two.npz", "fix", max_bytes=1600)) == ["a", "b"]
    with pytest.raises(DataError, match="array 'b'.*with the arrays before it, above the limit"):
        read_npz(tmp_path / "two.npz", "fix", max_bytes=1200)


def test_npz_corrupt_deflate_data_is_a_data_error(tmp_path):
    """Damage inside the compressed data (zlib.error or a CRC mismatch, whichever the bytes give) is typed."""
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(5000.0))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    start = raw.index(b"x.npy") + len(b"x.npy") + 200  # inside the member's deflate stream
    raw[start:start + 64] = b"\xff" * 64
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot be read|not a readable|corrupt"):
        read_npz(tmp_path / "c.npz", "fix")


def test_npz_member_header_claiming_more_than_the_archive_holds(tmp_path):
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6,)})
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue() + b"\x00" * 64)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_npz(tmp_path / "lie.npz", "fix")


@pytest.mark.parametrize("body, match", [(b"not a zip", "not a readable .npz archive"),
                                         (None, "not found")])
def test_npz_damaged_or_missing(tmp_path, body, match):
    if body is not None:
        (tmp_path / "d.npz").write_bytes(body)
    with pytest.raises(DataError, match=match):
        read_npz(tmp_path / "d.npz", "fix")


def test_npz_object_member_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="Python objects.*pickled"):
        read_npz(tmp_path / "o.npz", "fix")


# ------------------------------------------------------------------ PNG


@pytest.mark.parametrize("width, height", [(0, 5), (5, 0), (0, 0)])
def test_png_zero_width_or_height(tmp_path, width, height):
    (tmp_path / "z.png").write_bytes(png_bytes(width, height))
    with pytest.raises(DataError, match=rf"{width} x {height} pixels; an image needs at least 1 x 1"):
        load_image(tmp_path / "z.png")


@pytest.mark.parametrize("length", [12, 14, 0])
def test_png_ihdr_length_other_than_13(tmp_path, length):
    ihdr = (struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0) + b"\x00")[:length]
    (tmp_path / "h.png").write_bytes(png_bytes(4, 4, ihdr=ihdr))
    with pytest.raises(DataError, match=f"IHDR chunk has length {length}, the PNG spec requires 13"):
        load_image(tmp_path / "h.png")


def test_png_decompression_bomb_refused_from_the_header_in_milliseconds(tmp_path):
    # 20000 x 20000 pixels at 1 bit per pixel: ~40 KB of PNG that Pillow would expand to 400 MB of grey
    width = height = 20000
    row = b"\x00" * (1 + width // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(width, height, depth=1, idat=idat))
    assert path.stat().st_size < 1_000_000
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"20000 x 20000 = 400,000,000 pixels, more than the runtime decodes \(16,777,216"):
        load_image(path)
    assert time.perf_counter() - start < 0.5  # read from the 33-byte header, nothing decoded
    assert 20000 * 20000 > MAX_IMAGE_PIXELS


def test_png_corrupt_and_truncated_data_are_typed(tmp_path):
    good = png_bytes(8, 8, idat=zlib.compress(bytes(range(9)) * 8))
    (tmp_path / "trunc.png").write_bytes(good[:50])
    (tmp_path / "junk.png").write_bytes(png_bytes(8, 8, idat=b"not zlib at all"))
    (tmp_path / "short.png").write_bytes(good[:20])
    for name, match in [("trunc.png", "cannot be decoded"), ("junk.png", "cannot be decoded"), ("short.png", "truncated")]:
        with pytest.raises(DataError, match=match):
            load_image(tmp_path / name)


def test_paeth_and_average_filtered_png_decode_fast(tmp_path):
    """The pure-Python decoder took 77 s (Paeth) and 36 s (Average) for 21 KB PNGs; Pillow's C decoder, milliseconds."""
    rng = np.random.default_rng(0)
    w = h = 256
    rows = b"".join(bytes([3 if y % 2 else 4]) + rng.integers(0, 256, w * 3, dtype=np.uint8).tobytes() for y in range(h))
    (tmp_path / "p.png").write_bytes(png_bytes(w, h, color=2, idat=zlib.compress(rows)))
    start = time.perf_counter()
    pixels = read_png(tmp_path / "p.png")
    assert pixels.shape == (h, w, 3) and pixels.dtype == np.uint8
    assert time.perf_counter() - start < 2.0  # measured ~2 ms; the old decoder needed minutes for this


def test_png_16_bit_grey_and_palette(tmp_path):
    from PIL import Image

    grey16 = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    pixels, full = load_image(tmp_path / "g16.png")
    assert full == 65535.0 and pixels.shape == (3, 4, 1)
    np.testing.assert_array_equal(pixels[..., 0], grey16)
    Image.fromarray(np.uint8([[0, 255]])).convert("P").save(tmp_path / "pal.png")
    pixels, full = load_image(tmp_path / "pal.png")
    assert full == 255.0 and pixels.shape == (1, 2, 3)
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 255])


# ------------------------------------------------------------------ PGM


@pytest.mark.parametrize("body, match", [
    (b"P2\n2 2\n255\n0 1 -1 3\n", r"pixel value b'-1' is not a whole number in 0..255"),
    (b"P2\n2 2\n65535\n0 1 65536 3\n", r"pixel 2 \(row 1, column 0\) is 65536, above the file's maxval 65535"),
    (b"P2\n2 2\n65535\n0 1 " + b"9" * 5000 + b" 3\n", r"is not a whole number in 0..65535"),
    (b"P2\n2 2\n15\n0 1 16 3\n", r"pixel 2 \(row 1, column 0\) is 16, above the file's maxval 15"),
    (b"P5\n2 2\n15\n" + bytes([0, 15, 16, 255]), r"pixel 2 \(row 1, column 0\) is 16, above the file's maxval 15"),
    (b"P5\n2 2\n0\n" + bytes(4), "maxval is 0"),
    (b"P5\n2 2\n70000\n" + bytes(8), "maxval is 70000"),
    (b"P5\n0 2\n255\n", "0 x 2 pixels"),
    (b"P5\n" + b"9" * 5000 + b" 2\n255\n", "expected a whole number"),
    (b"P5\n20000 20000\n255\n", "400,000,000 pixels"),
    (b"P5\n2 2\n255\n\x00", "truncated"),
    (b"P2\n2 2\n255\n0 1\n", "2 of 4 pixel values"),
    (b"P5\n2", "header is truncated"),
])
def test_pgm_bad_values_are_refused(tmp_path, body, match):
    (tmp_path / "x.pgm").write_bytes(body)
    with pytest.raises(DataError, match=match):
        load_image(tmp_path / "x.pgm")


# ------------------------------------------------------------------ paths and manifests


def test_nul_in_a_path_is_a_typed_error(tmp_path):
    bad = str(tmp_path / "a\x00b")
    with pytest.raises(DataError, match="not found"):
        load_image(bad)
    with pytest.raises(DataError, match="cannot read"):
        read_npy(bad)
    with pytest.raises(BundleError, match="does not exist"):
        read_bundle(bad)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("torch", reason="building the test bundle needs torch")
    pytest.importorskip("onnxruntime")
    return rb.build_classifier(tmp_path_factory.mktemp("inputs") / "classifier", formats=("onnx",))


def _edit_manifest(src: Path, dst: Path, text: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "manifest.json").write_text(text)
    return dst


def test_manifest_huge_integer_deep_nesting_and_nan(built, tmp_path):
    text = (built.path / "manifest.json").read_text()
    data = json.loads(text)
    huge = text.replace('"steps": 4', '"steps": ' + "9" * 5000, 1)
    assert huge != text
    deep = json.dumps({**data, "model": {"arch": "odenet", "x": 0}}).replace('"x": 0', '"x": ' + "[" * 100_000 + "]" * 100_000)
    nan = text.replace('"t1": 1.0', '"t1": NaN', 1)
    assert nan != text
    cases = [(huge, "an integer with 5000 digits"), (deep, "nested too deeply"), (nan, "NaN is not a JSON number"),
             ("\xff\xfe", "not valid JSON|not UTF-8"), (text[:-40], "not valid JSON")]
    for i, (body, match) in enumerate(cases):
        bundle = _edit_manifest(built.path, tmp_path / f"b{i}", body)
        with pytest.raises(BundleError, match=match):
            Manifest.read(bundle)
        with pytest.raises(BundleError, match=match):
            load(bundle)


# ------------------------------------------------------------------ the CLI


def edgeode(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=180, **kw)


def test_cli_hostile_inputs_exit_2_without_traceback(built, tmp_path):
    np.savez(tmp_path / "x.npz", x=built.x)
    shutil.copy(tmp_path / "x.npz", tmp_path / "renamed.npy")
    (tmp_path / "bomb.png").write_bytes(png_bytes(30000, 30000))
    for name, match in [("renamed.npy", ".npz archive"), ("bomb.png", "pixels, more than")]:
        proc = edgeode("run", str(built.path), str(tmp_path / name))
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert match in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cli_inverted_image_gets_a_hint(built, tmp_path):
    img = np.full((6, 6), 255, np.uint8)  # white paper with a dark stroke: the training images are the other way round
    img[1:5, 2:4] = 0
    (tmp_path / "inv.pgm").write_bytes(b"P5\n6 6\n255\n" + img.tobytes())
    proc = edgeode("run", str(built.path), str(tmp_path / "inv.pgm"))
    assert proc.returncode == 0, proc.stderr
    assert "edgeode run: hint:" in proc.stderr and "looks inverted" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "ok.pgm").write_bytes(b"P5\n6 6\n255\n" + (255 - img).tobytes())
    proc = edgeode("run", str(built.path), str(tmp_path / "ok.pgm"))
    assert proc.returncode == 0 and "hint" not in proc.stderr, proc.stderr


def test_nan_input_is_refused(built, tmp_path):
    from edgeode.commands.run import _read_input

    np.save(tmp_path / "nan.npy", np.full((1, 1, 6, 6), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN or Inf"):
        _read_input(tmp_path / "nan.npy", load(built.path))


def test_inverted_hint_is_a_warning_in_the_api(built, tmp_path):
    from edgeode.runtime import preprocess_image

    (tmp_path / "white.pgm").write_bytes(b"P5\n6 6\n255\n" + bytes([250]) * 36)
    with pytest.warns(InputWarning, match="looks inverted"):
        preprocess_image(tmp_path / "white.pgm", load(built.path).manifest)


def test_cli_output_into_a_closed_pipe_exits_quietly(built, tmp_path):
    # 3,000 samples print ~250 KB, more than a pipe holds, and `head -n 1` exits after the first line
    np.save(tmp_path / "many.npy", np.zeros((3000, 1, 6, 6), np.float32))
    cmd = f"{sys.executable} -m edgeode run {built.path} {tmp_path / 'many.npy'} | head -n 1"
    proc = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True, cwd=ROOT,
                          timeout=180)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr
    assert proc.returncode == 141, proc.stderr


def test_nul_in_an_output_path_is_a_config_error(tmp_path):
    pytest.importorskip("torch")
    from edgeode.errors import ConfigError
    from edgeode.train.checkpoint import prepare_run_dir

    with pytest.raises(ConfigError, match="NUL byte"):
        prepare_run_dir(str(tmp_path / "run\x00x"))


def test_threads_beyond_the_bound_are_refused(built):
    from edgeode.errors import ConfigError
    from edgeode.runtime.model import max_threads

    for threads in (max_threads() + 1, 10**100):
        with pytest.raises(ConfigError, match=r"threads = .* is more than \d+ \(4 x this machine"):
            load(built.path, threads=threads)
    load(built.path, threads=max_threads()).close()
