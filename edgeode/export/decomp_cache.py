"""One scan of torch's operator registry per export, instead of several per converted file.

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["cached_cia_ops"]

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
