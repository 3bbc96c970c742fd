"""The dashboard's history: the documents a viewer may read (from the service layer's
`history`), queried, exported as CSV and charted."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dynvm.core.services import HistoryState

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm


def whole_history_stats(svc: Dynvm, docs: list[dict[str, Any]]
                        ) -> dict[str, list[dict[str, Any]]]:
    """The charts' figures of the whole history, computed once per read of it."""
    return svc.history.derived(docs, "stats", history_stats)


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
        if owner and owner not in str(d.get("username", "")).lower():
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


HISTORY_COLUMNS = ("name", "username", "os", "state", "ipaddr", "origin", "xhostref",
                   "request_id", "created_time", "create_duration_secs", "expired_time",
                   "deleted_time", "live_duration_secs", "delete_reason", "failure_reason",
                   "uuid")


def history_csv(docs: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HISTORY_COLUMNS)
    for d in docs:
        w.writerow(["" if d.get(c) is None else d.get(c) for c in HISTORY_COLUMNS])
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
