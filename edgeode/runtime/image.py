"""Image files -> model input, with numpy and the standard library only (no Pillow on the device).

Reads 8-bit non-interlaced PNG (grey, grey+alpha, RGB, RGBA; PNG spec, W3C 2003, §§ 11.2.2, 9.2
filters) and binary / ASCII PGM (P5 / P2, Netpbm). :func:`preprocess_image` then applies the
manifest's preprocessing: grey (ITU-R BT.601 luma), resize to ``image_size``, optional
inversion, scaling to ``raw_max`` and ``(raw * scale - mean) / std``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from edgeode.errors import DataError
from edgeode.runtime.manifest import Manifest

__all__ = ["load_image", "read_png", "read_pgm", "resize", "preprocess_image"]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _paeth_row(line: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    out = line.astype(np.int32)
    up = prior.astype(np.int32)
    for i in range(len(out)):
        a = int(out[i - bpp]) if i >= bpp else 0
        b = int(up[i])
        c = int(up[i - bpp]) if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    return out.astype(np.uint8)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, path: str) -> np.ndarray:
    if len(raw) < height * (stride + 1):
        raise DataError(f"{path}: PNG image data is truncated ({len(raw)} of {height * (stride + 1)} bytes)")
    data = np.frombuffer(raw, np.uint8, count=height * (stride + 1)).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(height):
        ftype, line = int(data[y, 0]), data[y, 1:]
        if ftype == 0:
            row = line.copy()
        elif ftype == 1:  # Sub: running sum per byte position modulo bpp
            padded = np.zeros(((stride + bpp - 1) // bpp) * bpp, np.uint32)
            padded[:stride] = line
            row = (np.cumsum(padded.reshape(-1, bpp), axis=0) & 0xFF).reshape(-1)[:stride].astype(np.uint8)
        elif ftype == 2:  # Up
            row = (line.astype(np.uint16) + prior).astype(np.uint8)
        elif ftype == 3:  # Average
            row = line.astype(np.int32)
            for i in range(stride):
                left = int(row[i - bpp]) if i >= bpp else 0
                row[i] = (row[i] + ((left + int(prior[i])) >> 1)) & 0xFF
            row = row.astype(np.uint8)
        elif ftype == 4:
            row = _paeth_row(line, prior, bpp)
        else:
            raise DataError(f"{path}: PNG row {y} has unknown filter type {ftype}; the file is corrupt")
        out[y] = row
        prior = row
    return out


def read_png(path: str | Path) -> np.ndarray:
    """Decode an 8-bit non-interlaced PNG to uint8 ``[H, W, C]`` (C = 1, 2, 3 or 4)."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIG):
        raise DataError(f"{path} is not a PNG file (bad signature)")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DataError(f"{path}: PNG chunk {ctype!r} is truncated; the file is incomplete")
        if zlib.crc32(ctype + body) != struct.unpack(">I", crc)[0]:
            raise DataError(f"{path}: PNG chunk {ctype!r} fails its CRC check; the file is corrupt")
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise DataError(f"{path}: PNG has no IHDR or no image data; the file is corrupt")
    width, height, depth, color, _comp, _filt, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace != 0:
        raise DataError(
            f"{path}: unsupported PNG (bit depth {depth}, colour type {color}, interlace {interlace}); the runtime reads "
            "8-bit non-interlaced grey/RGB/RGBA PNGs: re-save the image as such (or as PGM)"
        )
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DataError(f"{path}: PNG image data cannot be decompressed ({exc}); the file is corrupt") from None
    channels = _CHANNELS[color]
    pixels = _unfilter(raw, height, width * channels, channels, str(path))
    return pixels.reshape(height, width, channels)


def _pgm_tokens(data: bytes, count: int, path: str) -> tuple[list[int], int]:
    tokens, pos = [], 2
    while len(tokens) < count:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if pos < len(data) and data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise DataError(f"{path}: PGM header is truncated")
        try:
            tokens.append(int(data[start:pos]))
        except ValueError:
            raise DataError(f"{path}: PGM header holds {data[start:pos]!r}, expected a number") from None
    return tokens, pos


def read_pgm(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a PGM (P5 binary or P2 ASCII) to ``([H, W, 1] uint16 array, maxval)``."""
    data = Path(path).read_bytes()
    magic = data[:2]
    if magic not in (b"P5", b"P2"):
        raise DataError(f"{path} is not a PGM file (magic {magic!r}, expected P5 or P2)")
    (width, height, maxval), pos = _pgm_tokens(data, 3, str(path))
    if not 0 < maxval < 65536 or width < 1 or height < 1:
        raise DataError(f"{path}: invalid PGM header (width {width}, height {height}, maxval {maxval})")
    n = width * height
    if magic == b"P5":
        pos += 1  # the single whitespace after maxval
        dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
        if len(data) - pos < n * dtype.itemsize:
            raise DataError(f"{path}: PGM pixel data is truncated ({len(data) - pos} of {n * dtype.itemsize} bytes)")
        pixels = np.frombuffer(data, dtype, count=n, offset=pos).astype(np.uint16)
    else:
        values = data[pos:].split()
        if len(values) < n:
            raise DataError(f"{path}: ASCII PGM has {len(values)} of {n} pixel values; the file is truncated")
        try:
            pixels = np.array([int(v) for v in values[:n]], dtype=np.uint16)
        except ValueError:
            raise DataError(f"{path}: ASCII PGM holds a non-number pixel value") from None
    return pixels.reshape(height, width, 1), maxval


def load_image(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a PNG or PGM file: ``(float32 [H, W, C] pixels, full-scale value)``; alpha composited on white."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} not found")
    with open(path, "rb") as fh:  # only the signature: the reader below reads the file itself
        head = fh.read(8)
    if head.startswith(_PNG_SIG):
        pixels, full = read_png(path).astype(np.float32), 255.0
        if pixels.shape[2] in (2, 4):  # composite over a white background
            alpha = pixels[..., -1:] / 255.0
            pixels = pixels[..., :-1] * alpha + 255.0 * (1.0 - alpha)
        return pixels, full
    if head[:2] in (b"P5", b"P2"):
        pixels, maxval = read_pgm(path)
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


def preprocess_image(path: str | Path, manifest: Manifest, method: str = "bilinear") -> np.ndarray:
    """An image file as the model's input ``[1, C, H, W]`` float32, following ``manifest.input.preprocess``.

    Steps: decode; grey (BT.601 luma) if the model takes 1 channel; resize to ``image_size`` (or the
    input tensor's fixed H, W); pixel values to ``[0, raw_max]``; ``raw_max - raw`` if ``invert``;
    ``(raw * scale - mean) / std``.
    """
    pre = manifest.input.preprocess
    shape = manifest.input.tensor.shape
    if len(shape) != 4:
        raise DataError(f"this model takes inputs of shape {list(shape)}, not images; pass a .npy array instead")
    channels = shape[1] or 1
    pixels, full = load_image(path)
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
    x = (raw * np.float32(pre.scale) - np.float32(pre.mean)) / np.float32(pre.std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
