"""What strict consumers make of the exchange's output: the OASIS validator and misp-stix."""

from __future__ import annotations

import uuid
from typing import Any

from stix2validator import ValidationOptions, validate_instance

STRICT = ValidationOptions(version="2.1", strict=True)


def strict_problems(obj: dict[str, Any]) -> list[str]:
    """Every error and warning `stix2-validator --strict` reports for one object or bundle."""
    result = validate_instance(obj, STRICT)
    return [str(e) for e in result.errors + result.warnings]


def bundle_problems(bundle: dict[str, Any]) -> list[str]:
    """Strict problems of a bundle and of each object in it, each named by the object's id."""
    problems = strict_problems(bundle)
    for obj in bundle.get("objects", []):
        problems += [f"{obj.get('id')}: {p}" for p in strict_problems(obj)]
    return problems


def as_bundle(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


def to_misp(objects: list[dict[str, Any]]) -> list[Any]:
    """The MISP events misp-stix's STIX 2.1 -> MISP parser makes of these objects (a partner's import)."""
    from misp_stix_converter import ExternalSTIX2toMISPParser
    from misp_stix_converter.tools.stix2_loading_helpers import load_stix2_content

    parser = ExternalSTIX2toMISPParser()
    parser.load_stix_bundle(load_stix2_content(as_bundle(objects)))
    parser.parse_stix_bundle()
    return list(parser.misp_events) if not parser.single_event else [parser.misp_event]
