"""The OpenAPI document, made to say what the server really answers.

FastAPI documents a 422 ``HTTPValidationError`` that Settle never sends (invalid input is a
400 problem) and nothing of authentication or of the problem responses. This rewrites the
generated document once: every error status is ``application/problem+json`` with the
:class:`~settle.api.schemas.ProblemPublic` schema, ``/v1`` operations need a bearer key, and
integer bounds are integers (FastAPI's models turn them into floats: 2**63-1 became 2**63).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from settle.api.problems import PROBLEM_JSON
from settle.api.schemas import ProblemPublic
from settle.ledger.model import MAX_AMOUNT

__all__ = ["install_openapi"]

_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemPublic"}
_PROBLEM = {"content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}
_DESCRIPTIONS = {
    "400": "Input that can never be valid (malformed JSON, a wrong type, a bad cursor...)",
    "401": "No valid API key (`invalid_api_key`)",
    "403": "The key lacks the scope (`insufficient_scope`)",
    "404": "Not found for this tenant",
    "409": "A conflict with the current state",
    "413": "The body is over the limit (`payload_too_large`)",
    "415": "The body is not JSON (`unsupported_media_type`)",
    "422": "A ledger rule refused a well-formed request",
    "default": "Any other error, as a problem (405, 500, 503...)",
}


def _integer_bounds(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for bound in ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"):
                value = node.get(bound)
                if isinstance(value, float):
                    node[bound] = MAX_AMOUNT if value >= float(MAX_AMOUNT) else int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)


def _rewrite(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ProblemPublic"] = ProblemPublic.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key, sk_…"}
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422")):
                del responses["422"]  # FastAPI's validation error: never sent
            statuses = ["400", "default"]
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
                statuses += ["401", "403"]
            if "{" in path:
                statuses.append("404")
            if "requestBody" in operation:
                statuses += ["413", "415"]
            for status, response in responses.items():
                if status.startswith(("4", "5")) or status == "default":
                    response.setdefault("description", _DESCRIPTIONS.get(status, "An error"))
                    response.update(_PROBLEM)
            for status in statuses:
                responses.setdefault(status, {"description": _DESCRIPTIONS[status], **_PROBLEM})
    _integer_bounds(document)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
