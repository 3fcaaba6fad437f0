"""The OpenAPI 3.1 description, generated from the endpoint declarations and response schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.http.endpoint import SERVED_FROM, Endpoint
from api.http.errors import ERROR_CODES
from api.http.response_schemas import SCHEMAS, ref

OPENAPI_VERSION = "3.1.0"

_STATUS_TEXT = {
    400: "Malformed, out-of-range, repeated or unknown parameter or body field; malformed JSON",
    401: "Missing, malformed or invalid bearer token",
    403: "The token belongs to another user than the one whose data this changes",
    404: "No such resource (unknown id, or no route at this path)",
    405: "Method not allowed on this path",
    408: "The request's headers or body did not arrive within the server's read deadline (10 s)",
    413: "Request body over the size limit",
    415: "Request body is not application/json",
    422: "The Idempotency-Key was already used for another request",
    429: "Too many failed authentications from this address (see Retry-After)",
    500: "Unexpected server error (never expected; the body has no details)",
    503: "The data store is not answering (within the request's deadline, or another request just found "
    "it so) and what was asked is not in the worker's memory, or no model is published yet; see Retry-After",
}


def build_spec(endpoints: Sequence[Endpoint], version: str = "1.0.0") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths.setdefault(ep.openapi_path, {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Movie Time API",
            "version": version,
            "description": (
                "Movie recommendations precomputed by the Movie Time pipeline (MovieLens + TMDB), "
                "served from MongoDB, with onboarding and live feedback. Every error has the body "
                '{"error": {"code": ..., "message": ...}}; error codes: '
                + ", ".join(f"{code} ({status})" for code, status in ERROR_CODES.items())
                + ". Responses name the model_version they were read from."
            ),
        },
        "tags": [
            {
                "name": "users",
                "description": "Recommendations, activity, onboarding and feedback of a user",
            },
            {"name": "movies", "description": "Movie details, similar movies and search"},
            {"name": "clusters", "description": "User clusters (taste groups)"},
            {
                "name": "lists",
                "description": "Shareable movie lists: anyone with the link reads, the owner edits",
            },
            {
                "name": "groups",
                "description": "Watching together: a list for a group of users, made from theirs",
            },
            {"name": "service", "description": "Health, metrics and documentation"},
        ],
        "paths": paths,
        "components": {
            "schemas": {
                **SCHEMAS,
                **{ep.body.name: ep.body.json_schema() for ep in endpoints if ep.body},
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a user's token, mt_<userId>_<secret>: from POST /users, or issued "
                    "by an operator with `python -m pipeline token <userId>`",
                }
            },
            "responses": {
                str(status): {"description": text, "content": _json(ref("Error"))}
                for status, text in _STATUS_TEXT.items()
            },
        },
    }


def _operation(ep: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {str(ep.status): _ok(ep)}
    implied = {400}  # every operation rejects unknown, repeated or malformed query parameters
    if ep.body is not None:
        implied |= {400, 408, 413, 415}
    if ep.auth != "none":
        implied |= {401, 429} | ({403} if ep.auth == "user" else set())
    for status in sorted({*ep.errors, *implied, 404, 405, 500}):
        if status == 503 and ep.response == "Health":
            responses["503"] = {
                "description": _STATUS_TEXT[503],
                "content": _json(ref("HealthDown")),
            }
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    op: dict[str, Any] = {
        "operationId": ep.operation_id,
        "summary": ep.summary,
        "tags": [ep.tag],
        "parameters": [p.openapi() for p in ep.params],
        "responses": responses,
    }
    if ep.description:
        op["description"] = ep.description
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": _json(ref(ep.body.name))}
    if ep.auth != "none":
        op["security"] = [{"bearer": []}]
    return op


SERVED_FROM_HEADER = {
    "description": "memory: the store was not answering, and this answer was made from what the "
    "worker holds (the last served version it read); absent otherwise",
    "schema": {"type": "string", "enum": ["memory"]},
}


def _ok(ep: Endpoint) -> dict[str, Any]:
    if ep.response is not None:
        ok = {"description": "OK", "content": _json(ref(ep.response))}
        if not ep.writes:
            ok["headers"] = {SERVED_FROM: SERVED_FROM_HEADER}
        return ok
    if ep.content == "application/json":
        return {"description": "OK", "content": _json({"type": "object"})}
    if ep.content == "text/plain":
        return {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
        }
    return {"description": "OK", "content": {ep.content: {"schema": {"type": "string"}}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
