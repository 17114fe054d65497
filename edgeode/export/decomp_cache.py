"""One scan of torch's operator registries per export, instead of one or more per converted file.

Both converters (``torch.onnx.export(dynamo=True)`` and litert-torch) call
``ExportedProgram.run_decompositions``, which starts by listing every CompositeImplicitAutograd
operator that may be preserved (``torch._export.utils._collect_all_valid_cia_ops``): it walks
every operator namespace, several times per conversion. torch does not cache the list because a
custom-op registration can add entries; measured here it was about half of the conversion time of
a small part (the head: 2.3 s -> 1.6 s with the list cached; 2-core Xeon, shared).

:func:`cached_cia_ops` memoises the list for the duration of a ``with`` block, keyed by the set of
operator namespaces and the number of CompositeImplicitAutograd registrations in the C++
dispatcher, so that a registration made inside the block still invalidates it. Outside the block
(and on a torch without these private functions) torch's own function runs unchanged.

:func:`cached_onnx_registry` does the same for the ONNX exporter's table of torchlib translations
(``ONNXRegistry.from_torchlib``), which ``torch.onnx.export`` rebuilds on every call by importing and
walking all of torchlib: about 2 s of each of the three ONNX files of the paper MNIST ODE-Net (cProfile,
``edgeode export`` of that run, 2-core Xeon). Each call gets its own copy of the table, since an export
with a ``custom_translation_table`` adds to the one it is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["cached_cia_ops", "cached_onnx_registry"]

#: the modules that imported ``_collect_all_valid_cia_ops`` by name (torch 2.13)
_USERS = ("torch.export.exported_program", "torch.export.decomp_utils")


@contextlib.contextmanager
def cached_cia_ops() -> Iterator[None]:
    """Within the block, torch's list of preservable CompositeImplicitAutograd ops is computed once."""
    import importlib

    import torch

    try:
        from torch._export import utils

        original = utils._collect_all_valid_cia_ops
        users = [importlib.import_module(name) for name in _USERS]
        users = [m for m in users if getattr(m, "_collect_all_valid_cia_ops", None) is original]
    except (ImportError, AttributeError):  # another torch: nothing to cache
        yield
        return
    cache: dict[tuple, frozenset] = {}

    def collect():
        key = (tuple(torch.ops._dir),
               len(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd")))
        if key not in cache:
            cache.clear()
            cache[key] = frozenset(original())
        return cache[key]

    for module in users:
        module._collect_all_valid_cia_ops = collect
    try:
        yield
    finally:
        for module in users:
            module._collect_all_valid_cia_ops = original


@contextlib.contextmanager
def cached_onnx_registry() -> Iterator[None]:
    """Within the block, the ONNX exporter's torchlib registry is built once per opset and copied per call."""
    import torch

    try:
        from torch.onnx._internal.exporter import _registration

        registry_cls = _registration.ONNXRegistry
        original = registry_cls.__dict__["from_torchlib"]
    except (ImportError, AttributeError, KeyError):  # another torch: nothing to cache
        yield
        return
    cache: dict[tuple, object] = {}

    def from_torchlib(cls, opset_version=_registration._constants.TORCHLIB_OPSET):
        key = (cls, opset_version, tuple(torch.ops._dir))  # a new op namespace may add translations
        if key not in cache:
            cache[key] = original.__func__(cls, opset_version)
        built = cache[key]
        copy = cls()
        copy._opset_version = built._opset_version
        copy.functions = {target: list(decomps) for target, decomps in built.functions.items()}
        return copy

    registry_cls.from_torchlib = classmethod(from_torchlib)
    try:
        yield
    finally:
        registry_cls.from_torchlib = original
