"""Host drain and rolling-reboot routes: small JSON, beside the legacy API.

GET  /hosts                     every [xenhostN] and its members with their state
POST /hosts/<N>/drain|undrain   take a pool out of / back into placement (in the store)
GET  /maintenance               status of every pool's rolling reboot
POST /maintenance/<N>           {"execute": false, "strategy": "auto", "parallel": 5,
                                 "drain_timeout": 600}: the plan; with execute the run
                                 starts in this process (202), one per pool at a time
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from dynvm.api import access, errors, jsonbody
from dynvm.api.v1.problems import problem
from dynvm.core.errors import (
    DynvmError,
    MaintenanceFailed,
    MaintenanceRefused,
    StoreDown,
    StoreError,
)
from dynvm.core.services import Options

if TYPE_CHECKING:
    from dynvm.core.services.maintenance import Maintenance

log = logging.getLogger(__name__)

bp = Blueprint("maintenance", __name__)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, indent=2, sort_keys=True, default=str), status=status,
                    mimetype="application/json")


def _error(message: str, status: int, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status)


@bp.errorhandler(StoreDown)
@bp.errorhandler(StoreError)
def _store_down(exc: Exception) -> Response:
    """A problem body (with the `error` member these routes always had), never a guess."""
    reason = exc.message if isinstance(exc, StoreDown) else " ".join(str(exc).split())[:300]
    detail = f"the state store cannot be used ({reason})"
    log.warning("503 %s: %s", request.path, detail)
    return problem(503, detail, error=detail)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    return _error(str(exc.description), 413)


def service() -> Maintenance:
    return current_app.extensions["dynvm"].maintenance


@bp.get("/hosts")
@access.token
def hosts() -> Response:
    return _json(service().hosts_report())


@bp.post("/hosts/<int:ref>/drain")
@access.admin
def drain(ref: int) -> Response:
    return _json(service().set_drain(ref, True, by="api"))


@bp.post("/hosts/<int:ref>/undrain")
@access.admin
def undrain(ref: int) -> Response:
    return _json(service().set_drain(ref, False, by="api"))


@bp.get("/maintenance")
@access.token
def status() -> Response:
    return _json(service().status())


def _options(body: dict[str, Any]) -> Options:
    known = {"execute", "strategy", "parallel", "drain_timeout"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    execute = body.get("execute", False)
    if not isinstance(execute, bool):
        raise ValueError("execute must be true or false")
    strategy = body.get("strategy", "auto")
    if strategy not in ("migrate", "drain", "auto"):
        raise ValueError("strategy must be migrate, drain or auto")
    parallel = body.get("parallel", 5)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 64:
        raise ValueError("parallel must be an integer from 1 to 64")
    drain_timeout = body.get("drain_timeout", 600)
    if not isinstance(drain_timeout, (int, float)) or isinstance(drain_timeout, bool) \
            or not 0 <= drain_timeout <= 86400:
        raise ValueError("drain_timeout must be seconds from 0 to 86400")
    return Options(execute=execute, strategy=strategy, parallel=parallel,
                   drain_timeout=float(drain_timeout))


@bp.post("/maintenance/<int:ref>")
@access.admin
def reboot(ref: int) -> Response:
    svc = service()
    try:  # no body: every option's default
        opts = _options(jsonbody.json_object(empty_ok=True))
    except (ValueError, jsonbody.BadBody) as exc:
        return _error(str(exc), 400)
    try:
        plan = svc.rolling_reboot(ref, replace(opts, execute=False))
    except DynvmError as exc:
        return _error(errors.detail_of(exc), errors.status_of(exc))
    if not plan.ok:
        return _error("refused", 409, problems=plan.problems, plan=plan.to_dict())
    if not opts.execute:
        return _json({"executed": False, "plan": plan.to_dict()})
    holder = svc.run_holder(ref)
    if holder is not None:
        return _error(f"a maintenance run of xenhost{ref} is already running", 409,
                      held_by=holder)
    box: list[Any] = []
    failed: list[str] = []

    def run() -> None:
        try:
            svc.rolling_reboot(ref, opts, runner=box)
        except (MaintenanceRefused, MaintenanceFailed) as exc:
            failed.append(str(exc))
            log.error("xenhost%d maintenance: %s", ref, exc)
        except Exception as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            log.exception("xenhost%d maintenance failed", ref)

    worker = threading.Thread(target=run, name=f"dynvm-maintenance-{ref}", daemon=True)
    worker.start()
    # Answer once the run holds the pool (or could not): 202 means it is running.
    while worker.is_alive():
        if box and box[0].locked.wait(0.05):
            break
        if not box:
            worker.join(0.01)
    if not (box and box[0].locked.is_set()):
        return _error(failed[0] if failed else "the run did not start", 409,
                      held_by=svc.run_holder(ref))
    return _json({"executed": True, "plan": plan.to_dict(), "status": "/maintenance"}, 202)
