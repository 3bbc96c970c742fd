"""Operator routes: /health for load balancers and monitoring, /metrics for Prometheus."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app

from dynvm.api import access, gauges, metrics

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/health")
@access.public
def health() -> Response:
    """200 when everything is fine, 503 when degraded (`dynvm.core.health`), reasons first."""
    try:
        report = current_app.extensions["dynvm"].health.report()
    except Exception as exc:  # a failing health check must still answer, not 500
        log.exception("health check failed")
        report = {"reasons": [f"the health check itself failed: {type(exc).__name__}: {exc}"],
                  "status": "degraded"}
    status = 200 if report.get("status") == "ok" else 503
    # Not sorted: the reasons come first, so the first line of the answer says why.
    body = json.dumps(report, indent=2, default=str)
    return Response(body, status=status, mimetype="application/json")


@bp.get("/metrics")
@access.public
def prometheus() -> Response:
    body, content_type = metrics.render()
    body += gauges.render(current_app.extensions["dynvm"])  # farm gauges, from the store
    return Response(body, content_type=content_type)
