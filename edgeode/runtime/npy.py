"""Reading .npy and .npz files that may be hostile: each header is checked before any data is read.

``numpy.load`` alone trusts the header (a 128-byte file claiming 10^12 elements ends in a
``MemoryError``), opens an .npz archive renamed .npy as an ``NpzFile`` (not an array), inflates an
.npz member of any size (a few KB of zip can claim gigabytes), and raises assorted exceptions for
damaged headers. :func:`read_npy` and :func:`read_npz` turn each into a
:class:`~edgeode.errors.DataError` naming the problem and the fix. Never loads pickled data.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from edgeode.errors import DataError

__all__ = ["MAX_NPZ_BYTES", "read_npy", "read_npz"]

#: Most bytes the arrays read from one .npz archive may hold together once inflated (1 GiB): far above any
#: held-out set or sensor recording edgeode reads, far below what would exhaust a device's memory.
MAX_NPZ_BYTES = 2**30


def read_npy(path: str | Path) -> np.ndarray:
    """A .npy file as a numeric array, or a :class:`~edgeode.errors.DataError` that says what is wrong with it.

    The header is read first and its shape x dtype compared with the bytes the file really holds, so
    a header that claims 10^12 elements is refused at once instead of exhausting memory; an .npz
    archive (a zip file) renamed .npy is named as such; pickled (object) arrays are never loaded.
    """
    path = Path(path)
    fix = "write it with numpy.save(path, array) from a numeric array"
    try:
        fh = open(path, "rb")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r} ({exc}); pass the path of an .npy file") from None
    with fh:
        magic = fh.read(6)
        if magic.startswith(b"PK\x03\x04"):
            raise DataError(f"{path} is an .npz archive (a zip file), not an .npy array; save the one array you want "
                            "to run with numpy.save('x.npy', np.load(path)[NAME])")
        if magic != b"\x93NUMPY":
            raise DataError(f"{path} is not a readable .npy file (it does not start with the .npy magic); {fix}")
        fh.seek(0)
        shape, _fortran, dtype, nbytes = _header(fh, str(path), fix)
        have = path.stat().st_size - fh.tell()
        if nbytes > have:
            raise DataError(
                f"{path}: its header says shape {list(shape)} of {dtype} ({nbytes:,} bytes), but the "
                f"file holds only {have:,} bytes of data: it is truncated or corrupt; {fix}"
            )
        fh.seek(0)
        try:
            return np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable .npy file ({exc}); {fix}") from None


def _header(fh: IO[bytes], where: str, fix: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data bytes of the .npy header at ``fh`` (left just past the header)."""
    try:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except Exception as exc:  # numpy's header parser raises ValueError, tokenize.TokenError, SyntaxError, ...
        raise DataError(f"{where} has a corrupt .npy header ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects (dtype {dtype}), which edgeode never loads (they are pickled); {fix}")
    count = 1
    for dim in shape:
        count *= dim
    return shape, fortran, dtype, count * dtype.itemsize


def read_npz(path: str | Path, fix: str, names: tuple[str, ...] | None = None,
             max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an .npz archive (``numpy.savez``; all its ``.npy`` members for ``None``) by name,
    or a :class:`~edgeode.errors.DataError` that says what is wrong with the file.

    Each member's header is read before its data, and the arrays together may hold at most ``max_bytes``:
    an array above that, or larger than the archive says the member inflates to, is refused before it is
    inflated. Other members (not asked for, not ``.npy``) are never read. ``fix`` ends every message: how to
    write the file the caller expects (``np.savez(path, times=..., values=...)``). Missing ``names`` are
    simply absent from the result: the caller names what it needs.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} not found; {fix}") from None
    except Exception as exc:  # BadZipFile, OSError, ValueError, a zip64 record that lies, ...
        raise DataError(f"{path} is not a readable .npz archive ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
    arrays: dict[str, np.ndarray] = {}
    budget = max_bytes
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if names is not None and name not in names:
                continue
            where = f"{path}: array {name!r}"
            try:
                with archive.open(info) as fh:
                    shape, fortran, dtype, nbytes = _header(fh, where, fix)
                    if nbytes > budget:
                        raise DataError(f"{where} has shape {list(shape)} of {dtype} ({nbytes:,} bytes): with the "
                                        f"arrays before it, above the limit of {max_bytes:,} bytes "
                                        "(edgeode.runtime.npy.MAX_NPZ_BYTES); split the data")
                    if nbytes > info.file_size - fh.tell():
                        raise DataError(f"{where}: its header says {nbytes:,} bytes of data, but the archive holds "
                                        f"{max(info.file_size - fh.tell(), 0):,}: it is truncated or corrupt; {fix}")
                    flat = np.empty(nbytes // max(dtype.itemsize, 1), dtype)
                    view = memoryview(flat.view(np.uint8)) if nbytes else memoryview(b"")
                    got = 0
                    while got < nbytes:  # into the array itself: no second copy of the data
                        n = fh.readinto(view[got:])
                        if not n:
                            raise DataError(f"{where} ends after {got:,} of {nbytes:,} bytes: it is truncated; {fix}")
                        got += n
                    budget -= nbytes
                    arrays[name] = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
            except DataError:
                raise
            except Exception as exc:  # zlib.error, lzma.LZMAError, BadZipFile (CRC), OSError, EOFError, ...
                raise DataError(f"{where} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
    return arrays
