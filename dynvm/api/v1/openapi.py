"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic
models (the very models that validate requests)."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dynvm.api.v1 import models
from dynvm.api.v1.problems import MIME
from dynvm.api.v1.routes import OPERATIONS

REF = "#/components/schemas/{model}"
PATH_PARAMS = {"name": models.NAME, "request_id": models.REQUEST_ID}


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


@functools.cache
def build() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], Any]] = [(models.Problem, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            pairs.append((op.body, "validation"))
        pairs += [(m, "serialization") for _, m in op.responses.values() if m is not None]
    pairs = list(dict.fromkeys(pairs))
    refs, defs = models_json_schema(pairs, ref_template=REF)
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
            spec["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[(op.body, "validation")]}}}
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "dynvm", "version": "1",
                 "description": "Disposable VMs on demand: asynchronous requests, "
                                "ownership by token, quotas."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


@functools.cache
def document() -> str:
    return json.dumps(build(), indent=2, sort_keys=True)
