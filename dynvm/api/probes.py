"""Liveness and readiness probes, for orchestrators and load balancers.

`/health/live` only says the process answers (restart it if not);
`/health/ready` says it can serve: configuration good, store reachable and at
least one configured host reachable (send it traffic only then). The older
`/health` keeps its combined report.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app

from dynvm.core.store import StoreError

bp = Blueprint("probes", __name__)


def _answer(report: dict[str, Any], ok: bool) -> Response:
    report["status"] = "ok" if ok else "not ready"
    return Response(json.dumps(report, sort_keys=True, default=str), status=200 if ok else 503,
                    mimetype="application/json")


@bp.get("/health/live")
def live() -> Response:
    return _answer({}, True)


@bp.get("/health/ready")
def ready() -> Response:
    svc = current_app.extensions["dynvm"]
    checks: dict[str, Any] = {}
    try:
        cfg = svc.config()
        error = svc._config_status().get("error")
        checks["config"] = {"ok": not error, "error": error}
    except Exception as exc:  # a config that cannot be read is the answer, not a 500
        return _answer({"checks": {"config": {"ok": False, "error": str(exc)}}}, False)
    try:
        svc.ctx.store.ping()
        checks["store"] = {"ok": True}
    except StoreError as exc:
        checks["store"] = {"ok": False, "error": str(exc)}
    reachable = []
    for hc in cfg.hosts.values():
        try:
            svc.ctx.view(hc)
            reachable.append(hc.ref)
        except Exception:  # counted as unreachable
            continue
    checks["hosts"] = {"ok": bool(reachable), "reachable": sorted(reachable),
                       "configured": len(cfg.hosts)}
    return _answer({"checks": checks}, all(c["ok"] for c in checks.values()))
