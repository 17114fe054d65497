"""One recorded sensor series from a file, for a series bundle: ``edgeode run SERIES_BUNDLE FILE``.

Two layouts, both torch-free:

* ``.npz`` with ``times`` [n] (seconds, increasing) and ``values`` [n, channels] (raw samples, the
  manifest's ``series.channels`` in order): ``np.savez(path, times=t, values=x)``;
* ``.csv`` with a header row: a time column named ``t``, ``time`` or ``timestamp`` (seconds) and one
  column per channel of the manifest, by name, in any order; other columns are left out (and named).

Only the layout is checked here (shapes, numbers, column names); the model checks the values when it
runs them (:meth:`edgeode.runtime.series.SeriesModel.predict_series`: increasing times, finite samples).
Every array is read through :func:`edgeode.runtime.npy.read_npz`, which refuses an oversized member
before inflating it.
"""

from __future__ import annotations

import csv
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeode.errors import DataError, ShapeError
from edgeode.fsutil import is_file
from edgeode.runtime.manifest import SeriesSpec
from edgeode.runtime.npy import read_npz

__all__ = ["TIME_COLUMNS", "Recording", "read_series_file", "time_hints"]

TIME_COLUMNS = ("t", "time", "timestamp")
#: Largest CSV read (bytes): three hours of a 6-axis IMU at 50 Hz is about 50 MB of text; larger recordings
#: belong in .npz, which is read without parsing text.
MAX_CSV_BYTES = 64 * 2**20
#: Longest CSV line (characters): a time and the channels, with room for long headers.
MAX_CSV_LINE = 64 * 2**10


@dataclass(frozen=True)
class Recording:
    """``times`` [n] seconds and raw ``values`` [n, channels] of one series; ``ignored``: CSV columns left out."""

    times: np.ndarray
    values: np.ndarray
    source: str
    ignored: tuple[str, ...] = ()


def _how(spec: SeriesSpec) -> str:
    names = ",".join(spec.channels)
    return (f"write np.savez(path, times=t, values=x) with t [n] seconds and x [n, {len(spec.channels)}] "
            f"({names}), or a CSV with the header t,{names}")


def read_series_file(path: str | Path, spec: SeriesSpec) -> Recording:
    """The series in ``path`` (.npz or .csv, see the module doc) for a model that reads ``spec``'s channels."""
    path = Path(path)
    if not is_file(path):
        raise DataError(f"input file {str(path)!r} not found (or not a regular file); {_how(spec)}")
    suffix = path.suffix.lower()
    reader = {".npz": _from_npz, ".csv": _from_csv}.get(suffix)
    if reader is not None:
        return reader(path, spec)
    raise DataError(f"{path}: a series bundle reads a recorded series from .npz or .csv, not {suffix or 'a file without a suffix'}; "
                    f"{_how(spec)}")


def _from_npz(path: Path, spec: SeriesSpec) -> Recording:
    arrays = read_npz(path, _how(spec), names=("times", "values"))
    missing = [k for k in ("times", "values") if k not in arrays]
    if missing:
        raise DataError(f"{path} has no {' and no '.join(repr(m) for m in missing)} array; {_how(spec)}")
    times, values = arrays["times"], arrays["values"]
    for name, a in (("times", times), ("values", values)):
        if a.dtype.kind not in "fiu":
            raise DataError(f"{path}: {name} holds {a.dtype} values, not numbers; {_how(spec)}")
    if times.ndim != 1 or times.size == 0:
        raise ShapeError(f"{path}: times must be 1-D with at least one time, got shape {list(times.shape)}; {_how(spec)}")
    if values.shape != (times.size, len(spec.channels)):
        raise ShapeError(f"{path}: values has shape {list(values.shape)}; with {times.size} times it must be "
                         f"[{times.size}, {len(spec.channels)}] ({', '.join(spec.channels)}); {_how(spec)}")
    return Recording(times.astype(np.float64), values.astype(np.float64), str(path))


def _from_csv(path: Path, spec: SeriesSpec) -> Recording:
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise DataError(f"{path} is {size:,} bytes, above the limit of {MAX_CSV_BYTES:,} for a CSV series "
                        "(edgeode.runtime.series_file.MAX_CSV_BYTES); split it, or save it as .npz")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Excel's "CSV UTF-8")
            header = [h.strip() for h in _row(fh.readline(), path, 1)]
            if not any(header):
                raise DataError(f"{path} is empty or has no header row; {_how(spec)}")
            twice = sorted({h for h in header if header.count(h) > 1})
            if twice:
                raise DataError(f"{path}: column(s) {twice} appear more than once in the header; name each once")
            lower = [h.lower() for h in header]
            time_cols = [i for i, h in enumerate(lower) if h in TIME_COLUMNS]
            if len(time_cols) > 1:
                raise DataError(f"{path}: more than one time column in the header ({[header[i] for i in time_cols]}); "
                                "keep the one in seconds")
            time_col = time_cols[0] if time_cols else None
            if time_col is None:
                raise DataError(f"{path}: no time column in the header {header} (name it one of {', '.join(TIME_COLUMNS)}, "
                                f"in seconds); {_how(spec)}")
            missing = [c for c in spec.channels if c not in header]
            if missing:
                raise DataError(f"{path}: the header {header} has no column for channel(s) {missing}; the model reads "
                                f"{', '.join(spec.channels)}; {_how(spec)}")
            cols = [time_col] + [header.index(c) for c in spec.channels]
            ignored = tuple(h for i, h in enumerate(header) if i not in cols)
            data = array("d")  # 8 bytes a value, not a Python float object each
            for line_no, line in enumerate(fh, start=2):
                row = _row(line, path, line_no)
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}, line {line_no}: {len(row)} fields, the header has {len(header)}")
                try:
                    data.extend(float(row[i]) for i in cols)
                except ValueError:
                    bad = next(row[i] for i in cols if not _is_number(row[i]))
                    raise DataError(f"{path}, line {line_no}: {bad!r} is not a number (a missing sample is a row left "
                                    "out, not an empty or NaN field)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text CSV ({exc.reason} at byte {exc.start}); {_how(spec)}") from None
    if not data:
        raise DataError(f"{path} has a header but no samples; {_how(spec)}")
    table = np.frombuffer(data, np.float64).reshape(-1, len(cols))
    return Recording(table[:, 0].copy(), table[:, 1:].copy(), str(path), ignored)


def _row(line: str, path: Path, line_no: int) -> list[str]:
    """One CSV line's fields; a line longer than :data:`MAX_CSV_LINE` is refused before it is split."""
    if len(line) > MAX_CSV_LINE:
        raise DataError(f"{path}, line {line_no}: {len(line):,} characters, above the limit of {MAX_CSV_LINE:,} for "
                        "one row of a series (a time and a few channels); is it a CSV of samples, one per line?")
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise DataError(f"{path}, line {line_no} is not readable CSV ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def time_hints(times: np.ndarray, max_step: float) -> list[str]:
    """Warnings about a recording's clock that the model cannot see for itself: timestamps in milliseconds
    (every gap a hundred steps), or absolute ones (Unix epoch: float64 keeps only about 2e-7 s of them, so a
    gap of exactly one max_step can round up to two steps)."""
    hints = []
    if times.size > 1:
        gap = float(np.median(np.diff(times)))
        if gap > 50 * max_step:
            hints.append(f"the median gap is {gap:.6g} s, {gap / max_step:,.0f} solver steps of {max_step:g} s: times are "
                         "read in seconds (milliseconds? divide them by 1000)")
    if abs(float(times[0])) >= 1e6:
        hints.append(f"times start at {float(times[0]):.6g} s: absolute timestamps (Unix epoch?) keep only "
                     f"{np.spacing(abs(float(times[0]))):.1g} s of precision, so a one-step gap can round up to two "
                     "steps; subtract the first time")
    return hints
