"""The artifact's own record of what it computes, so that ``manifest.json`` cannot lie about it.

Every field of the manifest that changes what is computed is *computation-defining*: the model
kind, the input (name, shape, dtype, preprocessing), the output (shape, class labels), the solver
(tableau, t0, t1, steps, state shape), for a streaming series model the ``series`` section
(channels, normalisation, maximum step), and the artifact's role, format, precision, batch and tensor
specs. The exporter writes these values, as one canonical JSON document, *inside* each model file:

* ONNX: ``ModelProto.metadata_props`` entry ``edgeode.contract``;
* TFLite: ``Model.metadata`` entry ``edgeode.contract`` pointing at a buffer holding the JSON.

When a :class:`~edgeode.runtime.Model` opens an artifact it reads that record back (both readers
here are standard library only, independent of the backend) and refuses, with a
:class:`~edgeode.errors.BundleError` naming the field, the manifest's value and the value the
artifact was built with, a manifest that says anything else. Fields that only inform (``model``,
``tools``, ``created``, parity figures) may change freely. What to run *instead* of the recorded
solve is asked for explicitly (``load(steps=, tableau=)``, ``--steps``, ``--solver``), never by
editing the manifest.

An artifact without a record (written before edgeode recorded one, or by hand) is run as before and
reported as ``unchecked`` in ``Model.describe()["contract"]``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from edgeode.errors import BundleError
from edgeode.runtime.flatbuf import FlatBuffer
from edgeode.runtime.manifest import Artifact, Manifest

__all__ = ["CONTRACT_KEY", "check_contract", "contract_for", "contract_json", "read_contract"]

CONTRACT_KEY = "edgeode.contract"
CONTRACT_VERSION = 1
_MAX_RECORD = 1 << 20  # a record is a few KB; anything larger is not one edgeode wrote


def contract_for(manifest: Manifest, artifact: Artifact) -> dict[str, Any]:
    """The computation-defining fields of ``manifest`` for ``artifact``, as JSON-ready data."""
    art = artifact.to_dict()
    record = {
        "version": CONTRACT_VERSION,
        "kind": manifest.kind,
        "input": manifest.input.to_dict(),
        "output": manifest.output.to_dict(),
        "solver": manifest.solver.to_dict() if manifest.solver is not None else None,
        "artifact": {k: art[k] for k in ("role", "format", "precision", "batch", "inputs", "outputs")},
    }
    if manifest.series is not None:  # a streaming series model: channels, normalisation, max step (only then)
        record["series"] = manifest.series.to_dict()
    return record


def contract_json(manifest: Manifest, artifact: Artifact) -> str:
    """:func:`contract_for` as canonical JSON (sorted keys, no spaces): the bytes written into the file."""
    return json.dumps(contract_for(manifest, artifact), sort_keys=True, separators=(",", ":"), allow_nan=False)


# ------------------------------------------------------------------ reading the record back

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_fields(data: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of one protobuf message; length-delimited values as (start, end)."""
    pos, end = start, len(data) if end is None else end
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the message")
        yield number, wire, value


def _onnx_metadata(data: bytes) -> dict[str, str]:
    """``ModelProto.metadata_props`` (field 14: StringStringEntryProto key = 1, value = 2)."""
    props = {}
    for number, wire, value in _proto_fields(data):
        if number == 14 and wire == 2:
            entry = {n: data[v[0]:v[1]].decode("utf-8") for n, w, v in _proto_fields(data, *value) if w == 2}
            props[entry.get(1, "")] = entry.get(2, "")
    return props


def _tflite_metadata(data: bytes) -> dict[str, bytes]:
    """``Model.metadata`` (field 6: Metadata name = 0, buffer = 1) resolved through ``Model.buffers`` (field 4:
    Buffer data = 0, or offset = 1 / size = 2 past the flatbuffer), as in TFLite's ``schema.fbs``."""
    fb = FlatBuffer(data, "the file")  # damage: ValueError, which read_contract reports
    model = fb.root()
    buffers = fb.table_vector(model, 4, "buffers")
    found = {}
    for meta in fb.table_vector(model, 6, "metadata entries"):
        name_pos = fb.ref(meta, 0)
        name = data[name_pos + 4:name_pos + 4 + fb.u32(name_pos)].decode("utf-8") if name_pos is not None else ""
        pos = fb.field_pos(meta, 1)
        index = fb.u32(pos) if pos is not None else 0
        if name != CONTRACT_KEY or index >= len(buffers):
            continue
        buf = buffers[index]
        payload = fb.bytes_at(buf, 0)
        off, size = fb.field_pos(buf, 1), fb.field_pos(buf, 2)
        if not payload and off is not None and size is not None:
            start, length = struct.unpack_from("<Q", data, off)[0], struct.unpack_from("<Q", data, size)[0]
            payload = data[start:start + length]
        found[name] = payload
    return found


def read_contract(path: str | Path, fmt: str) -> dict[str, Any] | None:
    """The ``edgeode.contract`` record inside the model file at ``path`` (``fmt`` onnx or tflite), or None.

    Raises:
        BundleError: the file cannot be parsed, or its record is not valid JSON.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        if fmt == "onnx":
            raw = _onnx_metadata(data).get(CONTRACT_KEY)
        else:
            raw = _tflite_metadata(data).get(CONTRACT_KEY)
            raw = raw.decode("utf-8") if raw is not None else None
    except (ValueError, struct.error, UnicodeDecodeError, IndexError) as exc:
        raise BundleError(f"{path.name}: not a readable {fmt} file ({exc}); the file is corrupt: re-export the bundle") from None
    if raw is None:
        return None
    if len(raw) > _MAX_RECORD:
        raise BundleError(f"{path.name}: its {CONTRACT_KEY} record is {len(raw)} bytes, not one edgeode wrote; re-export")
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path.name}: its {CONTRACT_KEY} record is not valid JSON ({exc}); re-export the bundle") from None
    if not isinstance(record, dict):
        raise BundleError(f"{path.name}: its {CONTRACT_KEY} record is not a JSON object; re-export the bundle")
    return record


def _first_difference(built: Any, said: Any, where: str) -> tuple[str, Any, Any] | None:
    """(field path, built value, manifest value) of the first field that differs, or None."""
    if where == "solver.tableau" and built != said:  # one scheme: name it rather than a coefficient
        name = (built or {}).get("name") if isinstance(built, dict) else built
        other = (said or {}).get("name") if isinstance(said, dict) else said
        return where, name, other if other != name else f"{other} (with other coefficients)"
    if isinstance(built, dict) and isinstance(said, dict):
        for key in sorted(set(built) | set(said)):
            diff = _first_difference(built.get(key), said.get(key), f"{where}.{key}" if where else key)
            if diff is not None:
                return diff
        return None
    if (isinstance(built, list) and isinstance(said, list) and len(built) == len(said)
            and all(isinstance(v, dict) for v in built)):  # tensor specs: name the one that differs
        for i, (b, s) in enumerate(zip(built, said, strict=True)):
            diff = _first_difference(b, s, f"{where}[{i}]")
            if diff is not None:
                return diff
        return None
    return None if built == said else (where, built, said)


_HINTS = {
    "solver.steps": "to run another number of steps, pass steps=N (--steps N) instead of editing the manifest",
    "solver.tableau": "to run another solver, use mode='loop' with tableau= (--solver) instead of editing the manifest",
    "solver.t0": "the time span is part of what the model was trained and exported for",
    "solver.t1": "the time span is part of what the model was trained and exported for",
}


def check_contract(manifest: Manifest, artifact: Artifact, path: str | Path) -> bool:
    """Refuse ``manifest`` if it disagrees with the record inside ``artifact``'s file; False if it has none.

    Raises:
        BundleError: names the first differing field, the manifest's value and the built one.
    """
    built = read_contract(path, artifact.format)
    if built is None:
        return False
    said = json.loads(contract_json(manifest, artifact))
    diff = _first_difference(built, said, "")
    if diff is None:
        return True
    field, was, now = diff
    section = field.split(".")[0]
    name = field if section in ("kind", "input", "output", "solver", "version", "series") else f"artifacts[{artifact.path}].{field[9:]}"
    hint = next((h for k, h in _HINTS.items() if field.startswith(k)), "")
    raise BundleError(
        f"manifest {name} is {_show(now)} but {artifact.path} was built with {_show(was)}: manifest.json was edited or "
        f"belongs to another export. Restore it or re-export the bundle" + (f"; {hint}" if hint else "")
    )


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
