"""Operator routes: /health for load balancers and monitoring, /metrics for Prometheus."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app

from dynvm.api import gauges, metrics

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health() -> Response:
    """200 when everything is fine, 503 when degraded, so a balancer can act on it."""
    try:
        report = current_app.extensions["dynvm"].health()
    except Exception as exc:  # a failing health check must still answer, not 500
        log.exception("health check failed")
        report = {"status": "degraded", "error": f"health check failed: {exc}"}
    status = 200 if report.get("status") == "ok" else 503
    body = json.dumps(report, indent=2, sort_keys=True, default=str)
    return Response(body, status=status, mimetype="application/json")


@bp.get("/metrics")
def prometheus() -> Response:
    body, content_type = metrics.render()
    body += gauges.render(current_app.extensions["dynvm"])  # farm gauges, from the store
    return Response(body, content_type=content_type)
