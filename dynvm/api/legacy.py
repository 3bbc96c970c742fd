"""The legacy routes Jenkins jobs already call (all GET, query parameters).

Each route validates everything first (dynvm.api.validation), then makes one
call into the core facade and formats the answer (dynvm.api.formatting).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request

from dynvm.api import access, formatting
from dynvm.api.validation import (
    AvailableParams,
    InvalidParam,
    ShowAllParams,
    getservers_params,
    parse_params,
    release_params,
    setexpiry_params,
)
from dynvm.core.errors import ProvisionFailed

if TYPE_CHECKING:
    from dynvm.core.services.legacy import LegacyServers

log = logging.getLogger(__name__)

bp = Blueprint("legacy", __name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def service() -> LegacyServers:
    return current_app.extensions["dynvm"].legacy


def _args(**path: Any) -> dict[str, Any]:
    """Query parameters (first value of each) with the path parameters on top."""
    values: dict[str, Any] = {k: request.args.get(k) for k in request.args}
    values.update({k: v for k, v in path.items() if v is not None})
    return values


def _context() -> dict[str, Any]:
    svc = service()
    return {"os_keys": svc.os_keys(), "host_refs": svc.host_refs()}


def _view_headers(resp: Response, unreachable: list[int], age_secs: float) -> Response:
    if unreachable:
        resp.headers["X-Dynvm-Unreachable"] = formatting.host_list(unreachable)
    resp.headers["X-Dynvm-View-Age"] = f"{max(age_secs, 0.0):.1f}"
    return resp


@bp.get("/showall")
@bp.get("/showall/<os>")
@access.legacy_read
def showall(os: str | None = None) -> Response:
    p = parse_params(ShowAllParams, _args(os=os), _context())
    view = service().show_all(p.os, p.labels, p.ignore_labels)
    resp = Response(formatting.showall(view.hosts), mimetype=JSON)
    return _view_headers(resp, view.unreachable, view.age_secs)


@bp.get("/getavailablecount")
@bp.get("/getavailablecount/<os>")
@access.legacy_read
def getavailablecount(os: str | None = None) -> Response:
    p = parse_params(AvailableParams, _args(os=os), _context())
    if p.all_labels:
        rows = service().available_by_label(p.os)
        return Response(formatting.label_counts(rows), mimetype=JSON)
    avail = service().available(p.os, p.labels, p.ignore_labels)
    resp = Response(formatting.count(avail.count), content_type=TEXT)
    return _view_headers(resp, avail.unreachable, avail.age_secs)


@bp.get("/getservers")
@bp.get("/getservers/")
@bp.get("/releaseservers")
@bp.get("/releaseservers/")
@bp.get("/setexpiry")
@bp.get("/setexpiry/")
@access.legacy_write
def missing_name() -> Response:
    raise InvalidParam("name", f"missing: call {request.path.rstrip('/')}/<name>")


@bp.get("/getservers/<path:name>")
@access.legacy_write
def getservers(name: str) -> Response:
    p = getservers_params(name, _args(), _context())
    req = p.to_request()
    caller = access.caller()  # a token's owner when [auth] asks legacy callers for one
    if caller is not None:
        req = dataclasses.replace(req, owner=caller.owner)
    result = service().get_servers(req)
    if result.failed:
        log.warning("getservers %s: %d of %d VMs failed: %s", p.name, len(result.failed),
                    p.count, "; ".join(f"{n}: {why}" for n, why in result.failed))
    if not result.servers:  # the core raises ProvisionFailed first; never answer an empty list
        reasons = "; ".join(f"{n}: {why}" for n, why in result.failed) or "no reason given"
        raise ProvisionFailed(f"Error: no VM could be created: {reasons}")
    body = formatting.detailed(result.servers) if p.format == "detailed" \
        else formatting.ip_list(result.servers)
    resp = Response(body, mimetype=JSON)
    if result.failed:
        resp.headers["X-Dynvm-Failed"] = ",".join(n for n, _ in result.failed)
    return resp


@bp.get("/releaseservers/<path:rest>")
@access.legacy_write
def releaseservers(rest: str) -> Response:
    p = release_params(rest, _args())
    # The core resolves the target once, checks the caller may act on every VM of it
    # (403, nothing released, if not) and releases exactly those; none: 404.
    released = service().release_servers(p.target(), p.state, access.caller())
    return Response(formatting.names(released), mimetype=JSON)


@bp.get("/setexpiry/<path:rest>")
@access.legacy_write
def setexpiry(rest: str) -> Response:
    p = setexpiry_params(rest, _args())
    changed = service().set_expiry(p.target(), p.minutes, p.base == "created", access.caller())
    return Response(formatting.names(changed), mimetype=JSON)


# Routes that create or destroy VMs answer GET only. Werkzeug adds HEAD to every
# GET rule and Flask answers HEAD by running the GET view, so a monitoring probe
# or a link checker sending HEAD would build or release VMs. HEAD is taken off
# these rules: it gets 405 with `Allow: GET, OPTIONS`, like any other method.
MUTATING_ENDPOINTS = frozenset({"getservers", "releaseservers", "setexpiry", "missing_name"})


@bp.record_once
def _get_only(state: Any) -> None:
    """Runs after the routes above are added (deferred in order of definition)."""
    for rule in state.app.url_map.iter_rules():
        if rule.endpoint.partition(".")[2] in MUTATING_ENDPOINTS and rule.methods:
            rule.methods.discard("HEAD")
