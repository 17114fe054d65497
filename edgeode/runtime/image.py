"""Image files -> model input: PNG through Pillow, PGM through numpy, both size-capped before decoding.

PNG is decoded by Pillow (its C zlib and unfiltering: a 21 KB Paeth-filtered PNG took 77 s in the
pure-Python decoder this module used to hold). Before Pillow sees the file, the ``IHDR`` header
(PNG spec, W3C 2003, § 11.2.2: the first chunk, 13 bytes) is read here and the pixel count is
checked against :data:`MAX_IMAGE_PIXELS`, so a small file that claims a huge image (a
decompression bomb: 389 KB of PNG for 20000 x 20000 pixels) is refused in microseconds, without
allocating anything.

PGM (Netpbm P5 binary / P2 ASCII) is read with numpy, not Pillow: Pillow's P5 decoder silently
clamps a pixel above ``maxval`` to ``maxval`` (measured with Pillow 13.0.0: maxval 15, pixels
16 and 255 both came back as full white), where such a file is corrupt and is refused here.

:func:`preprocess_image` then applies the manifest's preprocessing: grey (ITU-R BT.601 luma),
resize to ``image_size``, optional inversion, scaling to ``raw_max`` and ``(raw * scale - mean) / std``.
An image whose background looks inverted relative to the training data gets an
:class:`~edgeode.errors.InputWarning` with the fix.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from edgeode.errors import DataError, InputWarning
from edgeode.fsutil import is_file
from edgeode.runtime.manifest import Manifest

__all__ = ["MAX_IMAGE_PIXELS", "load_image", "read_png", "read_pgm", "resize", "preprocess_image", "looks_inverted"]

MAX_IMAGE_PIXELS = 4096 * 4096
"""The largest image (width x height) the runtime decodes: 16,777,216 pixels, 4096 x 4096.

A model input is at most a few hundred pixels a side; an RGBA image at this cap already takes
256 MB as float32. Larger images are refused from their header, before decoding: resize them first.
"""

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PGM_NUMBER = re.compile(rb"[0-9]{1,10}")  # header numbers: 10 digits cover any sane width/height
_PGM_PIXEL = re.compile(rb"[0-9]{1,5}")  # P2 pixel values are at most 65535


def _check_pixels(path: Path, kind: str, width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise DataError(f"{path}: {kind} header says the image is {width} x {height} pixels; an image needs at "
                        "least 1 x 1: the file is corrupt, save the image again")
    if width * height > max_pixels:
        raise DataError(
            f"{path}: {kind} image is {width} x {height} = {width * height:,} pixels, more than the runtime decodes "
            f"({max_pixels:,}, edgeode.runtime.image.MAX_IMAGE_PIXELS); resize it to about the model's input size first"
        )


def _png_header(path: Path, head: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the IHDR chunk, checked; nothing beyond the first 33 bytes is read."""
    if len(head) < 33:
        raise DataError(f"{path}: PNG file is truncated ({len(head)} bytes, no complete IHDR header)")
    length, ctype = struct.unpack(">I4s", head[8:16])
    if ctype != b"IHDR":
        raise DataError(f"{path}: PNG's first chunk is {ctype!r}, the PNG spec requires IHDR there: the file is corrupt")
    if length != 13:
        raise DataError(f"{path}: PNG IHDR chunk has length {length}, the PNG spec requires 13: the file is corrupt")
    body, crc = head[16:29], struct.unpack(">I", head[29:33])[0]
    if zlib.crc32(b"IHDR" + body) != crc:
        raise DataError(f"{path}: PNG IHDR chunk fails its CRC check: the file is corrupt")
    width, height = struct.unpack(">II", body[:8])
    _check_pixels(path, "PNG", width, height, max_pixels)
    return width, height


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading PNG images needs Pillow: pip install 'edgeode[onnx]' (or 'edgeode[tflite]', or: pip install pillow); "
            "or pass the input as a .npy array or a PGM image"
        ) from None
    return Image


def read_png(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a PNG to ``[H, W, C]`` (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA): uint8, or uint16 for 16-bit grey.

    Any bit depth, colour type and interlacing Pillow reads; palettes are expanded. Raises
    :class:`DataError` for a corrupt or truncated file, or one larger than ``max_pixels``.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(33)
        if not head.startswith(_PNG_SIG):
            raise DataError(f"{path} is not a PNG file (bad signature)")
        _png_header(path, head, max_pixels)
        fh.seek(0)
        image_mod = _pillow()
        try:
            with image_mod.open(fh, formats=["PNG"]) as im:
                im.load()
                mode = im.mode
                if mode == "1":
                    im = im.convert("L")
                elif mode in ("P", "PA"):
                    im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
                elif mode not in ("L", "LA", "RGB", "RGBA") and not mode.startswith("I"):
                    im = im.convert("RGBA")
                pixels = np.asarray(im)
        except DataError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error, ... for corrupt data
            raise DataError(
                f"{path}: PNG cannot be decoded ({type(exc).__name__}: {exc}); the file is truncated or corrupt: "
                "save the image again"
            ) from None
    if pixels.dtype != np.uint8:  # 16-bit grey ("I;16" / "I"): values 0..65535
        pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _pgm_header(data: bytes, path: Path) -> tuple[list[int], int]:
    """width, height, maxval and the offset just past maxval (comments skipped, Netpbm rules)."""
    tokens, pos = [], 2
    while len(tokens) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            end = min((i for i in (data.find(b"\n", pos), data.find(b"\r", pos)) if i >= 0), default=len(data))
            pos = end
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise DataError(f"{path}: PGM header is truncated (it needs width, height and maxval)")
        token = data[start:pos]
        if not _PGM_NUMBER.fullmatch(token):
            raise DataError(f"{path}: PGM header holds {token[:20]!r}, expected a whole number: the file is corrupt")
        tokens.append(int(token))
    return tokens, pos


def read_pgm(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, int]:
    """Decode a PGM (P5 binary or P2 ASCII) to ``([H, W, 1] uint16 array, maxval)``.

    Refused with :class:`DataError`: a bad header, maxval outside 1..65535, more than ``max_pixels``
    pixels, truncated pixel data, and any pixel value above maxval.
    """
    path = Path(path)
    data = path.read_bytes()
    magic = data[:2]
    if magic not in (b"P5", b"P2"):
        raise DataError(f"{path} is not a PGM file (magic {magic!r}, expected P5 or P2)")
    (width, height, maxval), pos = _pgm_header(data, path)
    if not 0 < maxval < 65536:
        raise DataError(f"{path}: PGM maxval is {maxval}; Netpbm allows 1..65535: the file is corrupt")
    _check_pixels(path, "PGM", width, height, max_pixels)
    n = width * height
    if magic == b"P5":
        pos += 1  # the single whitespace after maxval
        dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
        if len(data) - pos < n * dtype.itemsize:
            raise DataError(f"{path}: PGM pixel data is truncated ({max(0, len(data) - pos)} of {n * dtype.itemsize} bytes)")
        pixels = np.frombuffer(data, dtype, count=n, offset=pos).astype(np.uint16)
    else:
        values = data[pos:].split(maxsplit=n)[:n]
        if len(values) < n:
            raise DataError(f"{path}: ASCII PGM has {len(values)} of {n} pixel values; the file is truncated")
        bad = next((v for v in values if not _PGM_PIXEL.fullmatch(v)), None)
        if bad is not None:
            raise DataError(f"{path}: ASCII PGM pixel value {bad[:20]!r} is not a whole number in 0..{maxval}: "
                            "the file is corrupt")
        pixels = np.array(values).astype(np.uint32)
    if n and int(pixels.max()) > maxval:
        first = int(np.argmax(pixels > maxval))
        raise DataError(
            f"{path}: PGM pixel {first} (row {first // width}, column {first % width}) is {int(pixels[first])}, above the "
            f"file's maxval {maxval}: the file is corrupt (save it again, with maxval at least the largest value)"
        )
    return pixels.astype(np.uint16).reshape(height, width, 1), maxval


def load_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, float]:
    """Read a PNG or PGM file: ``(float32 [H, W, C] pixels, full-scale value)``; alpha composited on white."""
    path = Path(path)
    if not is_file(path):
        raise DataError(f"image file {str(path)!r} not found (or not a regular file)")
    with open(path, "rb") as fh:  # only the signature: the reader below reads the file itself
        head = fh.read(8)
    if head.startswith(_PNG_SIG):
        raw = read_png(path, max_pixels)
        full = 65535.0 if raw.dtype == np.uint16 else 255.0
        pixels = raw.astype(np.float32)
        if pixels.shape[2] in (2, 4):  # composite over a white background
            alpha = pixels[..., -1:] / np.float32(full)
            pixels = pixels[..., :-1] * alpha + np.float32(full) * (1.0 - alpha)
        return pixels, full
    if head[:2] in (b"P5", b"P2"):
        pixels, maxval = read_pgm(path, max_pixels)
        return pixels.astype(np.float32), float(maxval)
    raise DataError(f"{path}: unknown image format; the runtime reads PNG and PGM (P5/P2) files")


def resize(img: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize ``[H, W, C]`` to ``size`` = (height, width): ``nearest`` or ``bilinear`` (half-pixel centres)."""
    h, w = img.shape[:2]
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        return img
    if method == "nearest":
        ys = np.minimum((np.arange(out_h) + 0.5) * h / out_h, h - 1).astype(np.int64)
        xs = np.minimum((np.arange(out_w) + 0.5) * w / out_w, w - 1).astype(np.int64)
        return img[ys][:, xs]
    if method != "bilinear":
        raise DataError(f"unknown resize method {method!r}; use 'nearest' or 'bilinear'")
    fy = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    fx = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0, x0 = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def looks_inverted(raw: np.ndarray, raw_max: float) -> bool:
    """Whether a preprocessed raw image ``[H, W, C]`` has a light background (its border's mean above half scale).

    edgeode's image data sets (MNIST, scikit-learn digits) are light strokes on a dark background
    (raw 0), and the manifest's ``invert`` is applied before this check, so a light border means
    the picture is drawn the other way round (a dark digit on white paper) and will be misread.
    """
    if raw.shape[0] < 3 or raw.shape[1] < 3:
        return False
    border = np.concatenate([raw[0].ravel(), raw[-1].ravel(), raw[1:-1, 0].ravel(), raw[1:-1, -1].ravel()])
    return float(border.mean()) > 0.5 * raw_max


def preprocess_image(path: str | Path, manifest: Manifest, method: str = "bilinear",
                     max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file as the model's input ``[1, C, H, W]`` float32, following ``manifest.input.preprocess``.

    Steps: decode; grey (BT.601 luma) if the model takes 1 channel; resize to ``image_size`` (or the
    input tensor's fixed H, W); pixel values to ``[0, raw_max]``; ``raw_max - raw`` if ``invert``;
    ``(raw * scale - mean) / std``. Warns (:class:`~edgeode.errors.InputWarning`) when the result's
    background is light, i.e. the image looks inverted relative to the training data.
    """
    pre = manifest.input.preprocess
    shape = manifest.input.tensor.shape
    if len(shape) != 4:
        raise DataError(f"this model takes inputs of shape {list(shape)}, not images; pass a .npy array instead")
    channels = shape[1] or 1
    pixels, full = load_image(path, max_pixels)
    if channels == 1 and pixels.shape[2] == 3:
        pixels = pixels @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    elif channels == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] != channels:
        raise DataError(f"{path}: image has {pixels.shape[2]} channels, the model takes {channels}")
    size = pre.image_size or (shape[2], shape[3])
    if size[0] is None or size[1] is None:
        size = pixels.shape[:2]
    pixels = resize(pixels, (int(size[0]), int(size[1])), method)
    raw = pixels * np.float32(pre.raw_max / full)
    if pre.invert:
        raw = np.float32(pre.raw_max) - raw
    if looks_inverted(raw, pre.raw_max):
        warnings.warn(InputWarning(
            f"{path} looks inverted: its background is light, but the model was trained on light strokes on a dark "
            f"background (manifest input.preprocess: raw 0 = background, invert {str(pre.invert).lower()}). If it is a "
            "dark drawing on white, invert it first (e.g. `255 - pixel`), or predictions will be wrong"
        ), stacklevel=2)
    x = (raw * np.float32(pre.scale) - np.float32(pre.mean)) / np.float32(pre.std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
