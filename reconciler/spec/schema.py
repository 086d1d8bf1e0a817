"""The JSON Schema of the spec, for editors (yaml-language-server) and for review."""

from __future__ import annotations

import json

from reconciler.spec.models import Spec

SCHEMA_ID = "https://reconcile.dev/schemas/reconcile.schema.json"


INTERPOLATED = {"type": "string", "pattern": r"\$\{(env|file):",
                "description": "${env:NAME}, ${env:NAME:-default}, ${env:NAME:+text}, ${env:NAME:?message} "
                               "or ${file:PATH}"}


def _allow_interpolation(node: object) -> object:
    """Booleans, numbers, enums and patterned strings may be written as ``${env:…}`` in the spec; say so to editors.
    Keys are never interpolated, so ``propertyNames`` stays as it is."""
    if isinstance(node, list):
        return [_allow_interpolation(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: v if k == "propertyNames" else _allow_interpolation(v) for k, v in node.items()}
    typed = node.get("type") in ("boolean", "integer", "number")
    if typed or "enum" in node or (node.get("type") == "string" and "pattern" in node):
        keep = {k: node.pop(k) for k in ("default", "description", "title") if k in node}
        return {**keep, "anyOf": [node, INTERPOLATED]}
    return node


def schema() -> dict:
    data = _allow_interpolation(Spec.model_json_schema(mode="validation"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "reconcile spec", **{k: v for k, v in data.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
