"""Feed sources, one module per kind; each has `batches(ctx)` and `check_options(options)`."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

MODULES = {
    "taxii21": "feeds.sources.taxii21",
    "stix-bundle": "feeds.sources.stix_bundle",
    "csv": "feeds.sources.csv",
    "text": "feeds.sources.text",
    "misp": "feeds.sources.misp",
}


def module_for(kind: str) -> ModuleType:
    """The source module for a feed kind."""
    try:
        return importlib.import_module(MODULES[kind])
    except KeyError:
        raise ValueError(f"unknown feed kind {kind!r}; expected one of {', '.join(MODULES)}") from None


def check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The kind's options, checked (ValueError says which is wrong and why)."""
    checked: dict[str, Any] = module_for(kind).check_options(options)
    return checked
