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
from dynvm.core.errors import DynvmError, StoreDown
from dynvm.core.maintenance import state as S
from dynvm.core.store import StoreError

if TYPE_CHECKING:
    from dynvm.core.maintenance.runner import Options

# The planner and runner are imported on first use: a worker that never serves
# these routes does not pay for them before its first request.

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


@bp.get("/hosts")
@access.token
def hosts() -> Response:
    from dynvm.core.maintenance import ops

    return _json(ops.hosts_report(current_app.extensions["dynvm"]))


@bp.post("/hosts/<int:ref>/drain")
@access.admin
def drain(ref: int) -> Response:
    from dynvm.core.maintenance import ops

    return _json(ops.set_drain(current_app.extensions["dynvm"], ref, True, by="api"))


@bp.post("/hosts/<int:ref>/undrain")
@access.admin
def undrain(ref: int) -> Response:
    from dynvm.core.maintenance import ops

    return _json(ops.set_drain(current_app.extensions["dynvm"], ref, False, by="api"))


@bp.get("/maintenance")
@access.token
def status() -> Response:
    from dynvm.core.maintenance import ops

    return _json(ops.status(current_app.extensions["dynvm"]))


def _options(body: dict[str, Any]) -> Options:
    from dynvm.core.maintenance.runner import Options

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
    from dynvm.core.maintenance import ops
    from dynvm.core.maintenance.runner import MaintenanceFailed, MaintenanceRefused

    svc = current_app.extensions["dynvm"]
    try:  # no body: every option's default
        opts = _options(jsonbody.json_object(empty_ok=True))
    except (ValueError, jsonbody.BadBody) as exc:
        return _error(str(exc), 400)
    try:
        plan = ops.rolling_reboot(svc, ref, replace(opts, execute=False))
    except DynvmError as exc:
        return _error(errors.detail_of(exc), errors.status_of(exc))
    if not plan.ok:
        return _error("refused", 409, problems=plan.problems, plan=plan.to_dict())
    if not opts.execute:
        return _json({"executed": False, "plan": plan.to_dict()})
    holder = svc.ctx.store.locks.holder(S.lock_name(ref))
    if holder is not None:
        return _error(f"a maintenance run of xenhost{ref} is already running", 409,
                      held_by=holder)
    box: list[Any] = []
    failed: list[str] = []

    def run() -> None:
        try:
            ops.rolling_reboot(svc, ref, opts, runner=box)
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
                      held_by=svc.ctx.store.locks.holder(S.lock_name(ref)))
    return _json({"executed": True, "plan": plan.to_dict(), "status": "/maintenance"}, 202)
