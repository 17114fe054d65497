"""Reading a .npy file that may be hostile: its header is checked against the file before any data is read.

``numpy.load`` alone trusts the header (a 128-byte file claiming 10^12 elements ends in a
``MemoryError``), opens an .npz archive renamed .npy as an ``NpzFile`` (not an array), and raises
assorted exceptions for damaged headers. :func:`read_npy` turns each into a
:class:`~edgeode.errors.DataError` naming the problem and the fix. Never loads pickled data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeode.errors import DataError

__all__ = ["read_npy"]


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
        try:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = reader(fh)
        except Exception as exc:  # numpy's header parser raises ValueError, tokenize.TokenError, SyntaxError, ...
            raise DataError(f"{path} has a corrupt .npy header ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
        if dtype.hasobject:
            raise DataError(f"{path} holds Python objects (dtype {dtype}), which edgeode never loads (they are pickled); {fix}")
        count = 1
        for dim in shape:
            count *= dim
        have = path.stat().st_size - fh.tell()
        if count * dtype.itemsize > have:
            raise DataError(
                f"{path}: its header says shape {list(shape)} of {dtype} ({count * dtype.itemsize:,} bytes), but the "
                f"file holds only {have:,} bytes of data: it is truncated or corrupt; {fix}"
            )
        fh.seek(0)
        try:
            return np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable .npy file ({exc}); {fix}") from None
