"""Reading the C and project templates shipped as package data (``edgeode/firmware/templates``)."""

from __future__ import annotations

from importlib import resources
from string import Template

__all__ = ["render"]


def render(name: str, **values: object) -> str:
    """The template ``templates/NAME`` with every ``${key}`` replaced (a missing key is a KeyError)."""
    text = resources.files("edgeode.firmware").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text).substitute({k: str(v) for k, v in values.items()})
