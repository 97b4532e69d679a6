"""The OpenAPI document made to agree with what the API does, so that a client or a fuzzer can trust it.

FastAPI documents every error as ``application/json`` (its own validation
error shape); the API answers every error with ``application/problem+json``
(``commune_collector.problems``). And parameters declared with a generic slug pattern
(``province``, ``item``) admit values the API then refuses as unknown. This
pass, run once when ``/openapi.json`` is first built, rewrites the generated
document: every 4xx/5xx response is the problem document, every ``/api/``
operation documents the 503 any store-backed route can answer, and the
province and item parameters are the enums of what exists (the 34 provinces,
the criteria file's items). Routes stay as they are written; a new route is
covered without doing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commune_collector.problems import MEDIA_TYPE, FieldProblem, ProblemDetail

PROBLEM_REF = "#/components/schemas/ProblemDetail"
UNAVAILABLE = "the store or the judge is unavailable, or a limit was reached; retry after Retry-After"
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")


def conform(schema: dict[str, Any], provinces: Sequence[str], items: Sequence[str] | None) -> dict[str, Any]:
    """Rewrite the generated document in place (and return it)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("FieldProblem", FieldProblem.model_json_schema())
    problem = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    problem.pop("$defs", None)
    components.setdefault("ProblemDetail", problem)
    enums = {"province": list(provinces), "item": list(items) if items is not None else None}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/api/"):
                responses.setdefault("503", {"description": UNAVAILABLE})
            for code, response in responses.items():
                if code == "default" or int(code) >= 400:
                    response["content"] = {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
            for parameter in operation.get("parameters", []):
                name = "province" if (parameter["name"], path) == ("slug", "/api/v1/provinces/{slug}") \
                    else parameter["name"]
                values = enums.get(name)
                if values is not None:
                    _to_enum(parameter["schema"], values)
    text = repr(schema["paths"])
    for name in _FASTAPI_ERRORS:  # no longer referenced: every error is a ProblemDetail
        if f"/{name}'" not in text:
            components.pop(name, None)
    return schema


def _to_enum(schema: dict[str, Any], values: list[str]) -> None:
    """A string schema (or the string branch of an optional one) becomes the enum of ``values``."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch.pop("pattern", None)
            branch["enum"] = values
