"""The dashboard's history: the documents a viewer may read (from the service layer's
`history`), queried, exported as CSV, summed up per OS and put in series for the charts
(drawn in the browser by the vendored uPlot, `static/dashboard-charts.js`)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dynvm.core.services import HistoryState, doc_owner

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm


def whole_history(svc: Dynvm, docs: list[dict[str, Any]], what: str) -> Any:
    """The summary (`summary`) or chart series (`charts`) of the whole history, computed
    once per read of it."""
    return svc.history.derived(docs, what, history_summary if what == "summary"
                               else chart_series)


def parse_day(text: str, end: bool = False) -> float | None:
    """'YYYY-MM-DD' (UTC) as epoch seconds; the end of that day with `end`."""
    text = (text or "").strip()
    if not text:
        return None
    day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    return day + 86400 if end else day


def history_query(docs: Iterable[dict[str, Any]], *, name: str = "", owner: str = "",
                  os: str = "", since: float | None = None, until: float | None = None
                  ) -> list[dict[str, Any]]:
    """Documents matching every given criterion, most recent first."""
    name, owner = name.strip().lower(), owner.strip().lower()
    if not (name or owner or os or since is not None or until is not None):
        return list(docs)  # already most recent first
    out = []
    for d in docs:
        created = d.get("created_time") or 0
        if name and name not in str(d.get("name", "")).lower():
            continue
        if owner and owner not in doc_owner(d).lower():
            continue
        if os and d.get("os") != os:
            continue
        if since is not None and created < since:
            continue
        if until is not None and created >= until:
            continue
        out.append(d)
    out.sort(key=lambda d: d.get("created_time") or 0, reverse=True)
    return out


HISTORY_COLUMNS = ("name", "owner", "username", "os", "state", "ipaddr", "origin", "xhostref",
                   "request_id", "created_time", "create_duration_secs", "expired_time",
                   "deleted_time", "live_duration_secs", "delete_reason", "failure_reason",
                   "uuid")


def history_csv(docs: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HISTORY_COLUMNS)
    for d in docs:
        row = dict(d, owner=doc_owner(d))
        w.writerow(["" if row.get(c) is None else row.get(c) for c in HISTORY_COLUMNS])
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def history_stats(docs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per OS and UTC day: VMs created, create duration p50/p95, median live duration."""
    days: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: {"create": [], "live": [], "n": []}))
    for d in docs:
        created = d.get("created_time")
        if not created or d.get("state") == HistoryState.FAILED:
            continue
        cell = days[d.get("os", "")][int(created) // 86400]
        cell["n"].append(1)
        if d.get("create_duration_secs") is not None:
            cell["create"].append(float(d["create_duration_secs"]))
        if d.get("live_duration_secs") is not None:
            cell["live"].append(float(d["live_duration_secs"]))
    out: dict[str, list[dict[str, Any]]] = {}
    for o, by_day in sorted(days.items()):
        out[o] = [{"day": datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d"),
                   "created": len(c["n"]),
                   "create_p50": percentile(c["create"], 50) if c["create"] else None,
                   "create_p95": percentile(c["create"], 95) if c["create"] else None,
                   "live_p50": percentile(c["live"], 50) if c["live"] else None}
                  for day, c in sorted(by_day.items())]
    return out


# Chart steps, shortest first: the first that keeps a series within MAX_POINTS is used, so
# an hour of history is charted per 5 minutes, a day per 15 minutes, a month per day.
STEPS = (300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_POINTS = 120


def _built(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents of VMs that were built (failures have no build time or lifetime)."""
    return [d for d in docs if d.get("created_time") and d.get("state") != HistoryState.FAILED]


def _median_or_none(values: list[float], q: float = 50) -> float | None:
    return round(percentile(values, q), 1) if values else None


def history_summary(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per OS over the documents given: VMs built, build time p50/p95 and median lifetime
    (seconds), first and last creation. The charts' figures in a table, JavaScript or not."""
    by_os: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in _built(docs):
        by_os[str(d.get("os", ""))].append(d)
    out = []
    for os_key, ds in sorted(by_os.items()):
        create = [float(d["create_duration_secs"]) for d in ds
                  if d.get("create_duration_secs") is not None]
        live = [float(d["live_duration_secs"]) for d in ds
                if d.get("live_duration_secs") is not None]
        created = [float(d["created_time"]) for d in ds]
        out.append({"os": os_key, "created": len(ds), "build_p50": _median_or_none(create),
                    "build_p95": _median_or_none(create, 95), "live_p50": _median_or_none(live),
                    "first": min(created), "last": max(created)})
    return out


def chart_series(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The charts' data: time steps `t` (epoch seconds, each the start of a step of `step`
    seconds) and per series name, per OS, one value per step (None where no VM was built):
    VMs created, build time p50 and p95 (seconds), median lifetime (minutes)."""
    built = _built(docs)
    if not built:
        return {"step": 0, "t": [], "series": {}}
    times = [float(d["created_time"]) for d in built]
    lo, hi = min(times), max(times)
    span = hi - lo
    step = next((s for s in STEPS if span / s < MAX_POINTS),
                math.ceil(span / MAX_POINTS / 86400) * 86400)
    start = int(lo // step * step)
    n = int((hi - start) // step) + 1
    cells: dict[str, list[dict[str, list[float]]]] = defaultdict(
        lambda: [{"create": [], "live": [], "n": []} for _ in range(n)])
    for d in built:
        cell = cells[str(d.get("os", ""))][int((float(d["created_time"]) - start) // step)]
        cell["n"].append(1)
        if d.get("create_duration_secs") is not None:
            cell["create"].append(float(d["create_duration_secs"]))
        if d.get("live_duration_secs") is not None:
            cell["live"].append(float(d["live_duration_secs"]) / 60)
    series: dict[str, dict[str, list[float | None]]] = {
        "created": {}, "build_p50": {}, "build_p95": {}, "live_p50": {}}
    for os_key, row in sorted(cells.items()):
        series["created"][os_key] = [float(len(c["n"])) for c in row]
        series["build_p50"][os_key] = [_median_or_none(c["create"]) for c in row]
        series["build_p95"][os_key] = [_median_or_none(c["create"], 95) for c in row]
        series["live_p50"][os_key] = [_median_or_none(c["live"]) for c in row]
    return {"step": step, "t": [start + i * step for i in range(n)], "series": series}
