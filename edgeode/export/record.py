"""Write the computation-defining record (:mod:`edgeode.runtime.contract`) into an exported model file.

ONNX: one ``metadata_props`` entry (``onnx`` package). TFLite: one ``Model.metadata`` entry and its
buffer, through the TFLite schema's object API that ships with LiteRT, written by
:func:`edgeode.export.tflite_file.write_model`. Either way the record is read back here before the file is accepted.
"""

from __future__ import annotations

from pathlib import Path

from edgeode.errors import ExportError
from edgeode.runtime.contract import CONTRACT_KEY, read_contract

__all__ = ["write_record"]


def _onnx(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != CONTRACT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=CONTRACT_KEY, value=text)
    onnx.save(model, str(path))


def _tflite(path: Path, text: str) -> None:
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgeode.export.tflite_file import read_model, write_model

    model = read_model(path.read_bytes())
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    meta = next((m for m in model.metadata if m.name in (CONTRACT_KEY, CONTRACT_KEY.encode())), None)
    if meta is None:  # a new buffer and a metadata entry naming it
        meta = schema.MetadataT()
        meta.name = CONTRACT_KEY
        meta.buffer = len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata.append(meta)
    model.buffers[meta.buffer].data = data
    write_model(path, model)  # the one TFLite writer: constants stay 16-aligned


def write_record(path: str | Path, fmt: str, text: str) -> None:
    """Store ``text`` (the artifact's contract JSON) inside the ``fmt`` model file at ``path``, in place.

    Raises:
        ExportError: the record could not be written or does not read back.
    """
    path = Path(path)
    (_onnx if fmt == "onnx" else _tflite)(path, text)
    back = read_contract(path, fmt)
    if back is None:
        raise ExportError(f"{path.name}: the {CONTRACT_KEY} record did not read back after writing it; report this bug")
