"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic
models (the very models that validate requests).

The document is the contract, so it also states what the server enforces
beyond the models: the body limits of `dynvm.api.jsonbody` (413 past 64 KiB),
and what the running configuration allows: the OS keys it serves and its host
numbers (the enums of `RequestIn.os` and `RequestIn.host`), and its longest lease (`vm.expiry.minutes`, the maximum of
`ExtendIn.minutes`). It is generated for the configuration it is served with.
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dynvm.api.jsonbody import MAX_BODY_BYTES, MAX_DEPTH
from dynvm.api.v1 import models
from dynvm.api.v1.problems import MIME
from dynvm.api.v1.routes import OPERATIONS

REF = "#/components/schemas/{model}"
PATH_PARAMS = {"name": models.NAME, "snapshot": models.NAME, "request_id": models.REQUEST_ID,
               "ident": models.KEY_ID}
BODY_RULES = (f"A JSON object of at most {MAX_BODY_BYTES} bytes (64 KiB; larger bodies get "
              f"413 before they are read), arrays and objects nested at most {MAX_DEPTH} "
              f"deep, each key once (400 otherwise).")


def _no_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is never JSON null: keep the other branch of `X | None`."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            merged.update(rest[0])
            if merged.get("default") is None:
                merged.pop("default", None)
            return merged
    return schema


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    props = model.model_json_schema(ref_template=REF).get("properties", {})
    return [{"name": name, "in": "query", "required": False, "schema": _no_null(schema),
             **({"description": schema["description"]} if "description" in schema else {})}
            for name, schema in props.items()]


class Served(NamedTuple):
    """What a configuration allows that the models cannot know (empty: anything valid)."""

    max_lease_minutes: int = models.MAX_MINUTES
    os_keys: tuple[str, ...] = ()
    host_refs: tuple[int, ...] = ()


def _only(prop: dict[str, Any], values: list[Any]) -> None:
    """Restrict a property (or the non-null branch of `X | None`) to `values`."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") != "null":
            branch["enum"] = values


@functools.lru_cache(maxsize=8)
def build(served: Served) -> dict[str, Any]:
    """The document for a configuration that allows what `served` says."""
    pairs: list[tuple[type[BaseModel], Any]] = [(models.Problem, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            pairs.append((op.body, "validation"))
        pairs += [(m, "serialization") for _, m in op.responses.values() if m is not None]
    pairs = list(dict.fromkeys(pairs))
    refs, defs = models_json_schema(pairs, ref_template=REF)
    schemas = defs.get("$defs", {})
    # Extending past the longest lease is refused (400), so is an OS nobody serves: the
    # document says where those lines are.
    schemas["ExtendIn"]["properties"]["minutes"]["maximum"] = served.max_lease_minutes
    asked = schemas["RequestIn"]["properties"]
    if served.os_keys:
        _only(asked["os"], sorted(served.os_keys))
    if served.host_refs:
        _only(asked["host"], sorted(served.host_refs))
    problem = {"description": "a problem (RFC 7807)",
               "content": {MIME: {"schema": refs[(models.Problem, "serialization")]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": PATH_PARAMS[p]}}
                  for p in PATH_PARAMS if "{" + p + "}" in op.path]
        if op.query is not None:
            params += _query_params(op.query)
        responses: dict[str, Any] = {}
        for status, (text, model) in sorted(op.responses.items()):
            if model is not None:
                content = {"application/json": {"schema": refs[(model, "serialization")]}}
            elif op.op_id == "docs_page":
                content = {"text/html": {"schema": {"type": "string"}}}
            else:
                content = {"application/json": {"schema": {"type": "object"}}}
            entry: dict[str, Any] = {"description": text, "content": content}
            if status in op.headers:
                entry["headers"] = {h: {"schema": {"type": "string"}, "required": True}
                                    for h in op.headers[status]}
            responses[str(status)] = entry
        responses["default"] = problem
        spec: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary,
                                "tags": [op.tag], "parameters": params,
                                "responses": responses,
                                "security": [{"bearer": []}] if op.secured else []}
        if op.body is not None:
            spec["requestBody"] = {"required": True, "description": BODY_RULES, "content": {
                "application/json": {"schema": refs[(op.body, "validation")]}}}
            responses["413"] = {"description": f"the body is over {MAX_BODY_BYTES} bytes",
                                "content": problem["content"]}
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "dynvm", "version": "1",
                 "description": "Disposable VMs on demand: asynchronous requests, "
                                "ownership by token, quotas. Request bodies: " + BODY_RULES},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@functools.lru_cache(maxsize=8)
def document(served: Served) -> str:
    return json.dumps(build(served), indent=2, sort_keys=True)
