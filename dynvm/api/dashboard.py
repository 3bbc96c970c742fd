"""The operator's dashboard at `/` and the JSON routes behind it (`/ui/api/...`).

The page is rendered on the server, so its tables sort, filter and page with
plain links and forms (JavaScript off works). With JavaScript on, a small
script re-fetches the live sections from `/ui/fragments` every few seconds
and swaps them in, without a full reload.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template, request
from markupsafe import Markup

from dynvm.api import access, auth
from dynvm.api import dashboard_history as history
from dynvm.api.v1.problems import problem
from dynvm.api.validation import InvalidParam
from dynvm.core.errors import StoreDown, StoreError
from dynvm.core.services import RECENT_HOURS, doc_owner, span

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm, Snapshot

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/ui/static")

PREFIX = "/ui/api"
VM_PAGE = 50  # VM table rows per page (the page and /ui/api/vms)
VM_PAGE_MAX = 5000
HISTORY_PAGE = 25
REQUESTS_PAGE = 100  # finished requests per page (the page shows the first)
REQUESTS_PAGE_MAX = 1000
HISTORY_PAGE_MAX = 1000
REFRESH_SECS = 3
LIVE_SECTIONS = ("farm", "fleet", "vms", "requests", "warm")


def _svc() -> Dynvm:
    return current_app.extensions["dynvm"]


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


def _int(name: str, default: int, lo: int = 1, hi: int = 10**6) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise InvalidParam(name, f"expected a whole number from {lo} to {hi}, got {raw!r}")
    return int(raw)


def _day(name: str, end: bool = False) -> float | None:
    try:
        return history.parse_day(request.args.get(name, ""), end)
    except ValueError:
        raise InvalidParam(name, f"expected a date YYYY-MM-DD, got {request.args.get(name)!r}"
                           ) from None


# ---------------------------------------------------------------- filters


def _vm_args() -> dict[str, Any]:
    a = request.args
    return {"q": a.get("q", ""), "state": a.get("state", ""), "os": a.get("os", ""),
            "sort": a.get("sort", "name"), "desc": a.get("desc", "") in ("1", "true")}


def _history_args(prefix: str = "h_") -> dict[str, Any]:
    a = request.args
    return {"name": a.get(prefix + "name", ""), "owner": a.get(prefix + "owner", ""),
            "os": a.get(prefix + "os", ""), "since": _day(prefix + "from"),
            "until": _day(prefix + "to", end=True)}


def _link(**changes: Any) -> str:
    """The current page's URL with some query parameters changed (for sort and page links)."""
    args = {k: v for k, v in request.args.items()}
    for k, v in changes.items():
        if v in (None, "", False):
            args.pop(k, None)
        else:
            args[k] = v
    return "/?" + urlencode(args) if args else "/"


# ---------------------------------------------------------------- rendering helpers


def _ago(secs: float | None) -> str:
    return span(secs, unknown="")


def _when(epoch: float | None) -> str:
    if not isinstance(epoch, int | float) or not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _hm(epoch: float | None) -> str:
    """A time of today as an operator reads it at a glance (UTC)."""
    if not isinstance(epoch, int | float) or not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M UTC")


def _gib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**30:.1f}"


def pages_shown(page: int, pages: int, edge: int = 3, near: int = 2) -> list[int]:
    """The page numbers a pager links: the first and last `edge` and those within `near`
    of the current one (a farm of 10,000 VMs has 200 pages; no loop over all of them)."""
    shown = {*range(1, min(edge, pages) + 1), *range(max(1, pages - edge + 1), pages + 1),
             *range(max(1, page - near), min(pages, page + near) + 1)}
    return sorted(shown)


def _unless_down(ctx: dict[str, Any], read: Callable[[], Any]) -> Any:
    """read(), or None when the store cannot be read (noted in `ctx` for the banner)."""
    try:
        return read()
    except StoreDown as exc:
        ctx["store_error"] = ctx.get("store_error") or exc.message
        return None


def _query(docs: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents matching `args`: once per read of the history when `docs` is all
    of it (the page, its refreshes and the JSON pages share it)."""
    return _svc().history.derived(docs, f"query {sorted(args.items())!r}",
                                  lambda d: history.history_query(d, **args))


def _docs() -> list[dict[str, Any]]:
    """The history documents this request's caller may read."""
    svc = _svc()
    return svc.history.visible(svc.history.docs(), access.viewer())


def _sections(which: tuple[str, ...]) -> dict[str, Any]:
    """The template context of the requested sections, from one snapshot.

    When the store cannot be read, `store_error` says why: the page shows it in a
    banner, and the sections made of store records say they cannot be shown (never
    an empty table); the farm and VMs come from the inventory, marked as such.

    An owner's token shows the farm and warm pools whole (they are totals) and
    only its own VMs, requests and history; an admin's (or no [auth]) all.
    """
    svc = _svc()
    board = svc.dashboard
    snap = board.snapshot()
    viewer = access.viewer()
    ctx: dict[str, Any] = {"viewer": access.caller(), "csrf": _csrf(),
                           "refresh_secs": _int("refresh", REFRESH_SECS, 1, 3600), "ago": _ago, "when": _when,
                           "hm": _hm, "gib": _gib, "owner_of": doc_owner, "link": _link, "args": request.args,
                           "store_error": snap.store_error,
                           "os_keys": sorted(board.os_keys()),
                           "vm_states": board.vm_state_names()}
    docs = None
    if "farm" in which:
        # 200 host rows at 10,000 VMs: rendered once per change of what they show
        ctx["farm_html"] = board.shared(snap, "farm html", lambda: Markup(render_template(
            "dashboard/_farm.html", farm=board.hosts(snap), store_error=snap.store_error,
            hm=_hm, gib=_gib)))
    if "fleet" in which:  # the farm's, whoever looks (as the farm is)
        ctx["fleet"] = _unless_down(ctx, svc.fleet.status)
    if "vms" in which:
        va = _vm_args()
        rows = board.vm_table(snap, viewer, **va)
        pages = max(1, math.ceil(len(rows) / VM_PAGE))
        page = min(_int("vpage", 1), pages)
        ctx.update(vm_rows=board.fresh(rows[(page - 1) * VM_PAGE: page * VM_PAGE], snap.now),
                   vm_total=len(rows), vm_page=page, vm_pages=pages, vm_args=va,
                   vm_pager=pages_shown(page, pages))
    if "requests" in which:
        ctx["reqs"] = _unless_down(ctx, lambda: board.requests(viewer=viewer))
        ctx["requests_page"] = REQUESTS_PAGE
    if "warm" in which or "history" in which:
        docs = _unless_down(ctx, svc.history.docs)
    if "warm" in which:
        # counts of the whole farm, whoever looks
        ctx["warm"] = None if docs is None or snap.store_error else board.warm_pools(snap, docs)
    if "history" in which:
        def render(visible: list[dict[str, Any]] | None) -> Markup:
            return Markup(render_template("dashboard/_history.html",
                                          **_history_section(svc, visible)))

        # Rendered once per read of the history, viewer's documents and query (the
        # pager's links carry every parameter of the page).
        ctx["history_html"] = render(None) if docs is None else svc.history.derived(
            svc.history.visible(docs, viewer), f"html {sorted(request.args.items())!r}", render)
        ctx["hist_query"] = urlencode({k: v for k, v in request.args.items()
                                       if k.startswith("h_") and k != "h_page"})
    return ctx


def _history_section(svc: Dynvm, docs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The history section's template context over the documents the viewer may read
    (None: the store cannot be read)."""
    ctx: dict[str, Any] = {"hist_rows": None, "ago": _ago, "when": _when, "owner_of": doc_owner,
                           "link": _link}
    if docs is None:
        return ctx
    found = _query(docs, _history_args())
    pages = max(1, math.ceil(len(found) / HISTORY_PAGE))
    page = min(_int("h_page", 1), pages)
    whole = len(found) == len(docs)  # the whole history: figured once per read
    ctx.update(hist_rows=found[(page - 1) * HISTORY_PAGE: page * HISTORY_PAGE],
               hist_total=len(found), hist_page=page, hist_pages=pages,
               hist_pager=pages_shown(page, pages),
               summary=history.whole_history(svc, docs, "summary")
               if whole else history.history_summary(found),
               chart_json=_chart_json(history.whole_history(svc, docs, "charts")
                                      if whole else history.chart_series(found)))
    return ctx


def _csrf() -> str:
    """The CSRF token of a signed-in browser, for the page's own state-changing forms."""
    secret = request.cookies.get(auth.COOKIE)
    return auth.csrf_of(secret) if secret else ""


def _chart_json(series: dict[str, Any]) -> str:
    """The charts' data, for the `data-figures` attribute the chart script reads (escaped
    there like any attribute: the page runs no inline script)."""
    return json.dumps(series, separators=(",", ":"))


# ---------------------------------------------------------------- pages


@bp.get("/")
@access.declare(access.Access.TOKEN, page=True)
def index() -> Response:
    """The page; 503 (still the whole page, with its banner) when the store cannot be read."""
    ctx = _sections(LIVE_SECTIONS + ("history",))
    return Response(render_template("dashboard/index.html", **ctx),
                    status=503 if ctx["store_error"] else 200, mimetype="text/html")


@bp.get("/ui/fragments")
@access.token
def fragments() -> Response:
    """The live sections as HTML, for the page's refresh script (a problem when the store
    cannot be read: the script then shows the banner over what it showed last)."""
    ctx = _sections(LIVE_SECTIONS)
    if ctx["store_error"]:
        raise StoreDown(ctx["store_error"])
    body = {s: str(ctx["farm_html"]) if s == "farm" else render_template(f"dashboard/_{s}.html", **ctx)
            for s in LIVE_SECTIONS}
    return _json(body)


@bp.get("/ui/history.csv")
@access.token
def history_csv() -> Response:
    found = history.history_query(_docs(), **_history_args())
    return Response(history.history_csv(found), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=dynvm-history.csv"})


# ---------------------------------------------------------------- JSON routes
# Each answers from the store's records or not at all: a store that cannot be read
# is a 503 problem (below), never an empty list that reads as "nothing there".


def _snapshot() -> Snapshot:
    return _svc().dashboard.snapshot().require_store()


@bp.errorhandler(StoreDown)
@bp.errorhandler(StoreError)
def _store_down(exc: Exception) -> Response:
    detail = exc.message if isinstance(exc, StoreDown) else \
        f"the state store cannot be read ({' '.join(str(exc).split())[:300]})"
    log.warning("503 %s: %s", request.path, detail)
    if request.endpoint == "dashboard.index":  # a person at the page (its caller unknown)
        from dynvm.api.signin import form_page

        return form_page(status=503, message=f"The dashboard cannot be shown: {detail}. "
                                             f"Try again once the store answers.")
    return problem(503, detail)


@bp.get(f"{PREFIX}/hosts")
@access.token
def api_hosts() -> Response:
    return _json(_svc().dashboard.hosts(_snapshot()))


@bp.get(f"{PREFIX}/fleet")
@access.token
def api_fleet() -> Response:
    return _json(_svc().fleet.status())


@bp.get(f"{PREFIX}/vms")
@access.token
def api_vms() -> Response:
    """A page of the VM table, filtered and sorted on the server (`page`, `per_page`)."""
    board, snap = _svc().dashboard, _snapshot()
    rows = board.vm_table(snap, access.viewer(), **_vm_args())
    per_page = _int("per_page", VM_PAGE, 1, VM_PAGE_MAX)
    page = _int("page", 1)
    return _json({"vms": board.fresh(rows[(page - 1) * per_page: page * per_page], snap.now),
                  "total": len(rows), "page": page, "per_page": per_page,
                  "pages": max(1, math.ceil(len(rows) / per_page))})


@bp.get(f"{PREFIX}/requests")
@access.token
def api_requests() -> Response:
    """Queued and running requests whole; the finished ones of the last `hours` a page at
    a time (`page`, `per_page`), newest first."""
    hours = _int("hours", int(RECENT_HOURS), 1, 24 * 30)
    per_page = _int("per_page", REQUESTS_PAGE, 1, REQUESTS_PAGE_MAX)
    page = _int("page", 1)
    body = _svc().dashboard.requests(hours, access.viewer())
    recent = body["recent"]
    return _json({**body, "recent": recent[(page - 1) * per_page: page * per_page],
                  "recent_total": len(recent), "page": page, "per_page": per_page,
                  "pages": max(1, math.ceil(len(recent) / per_page))})


@bp.get(f"{PREFIX}/warmpools")
@access.token
def api_warm() -> Response:
    return _json({"pools": _svc().dashboard.warm_pools(_snapshot())})


@bp.get(f"{PREFIX}/capacity")
@access.token
def api_capacity() -> Response:
    return _json(_svc().dashboard.capacity(_snapshot()))


@bp.get(f"{PREFIX}/history")
@access.token
def api_history() -> Response:
    found = _query(_docs(), _history_args(prefix=""))
    per_page = _int("per_page", HISTORY_PAGE, 1, HISTORY_PAGE_MAX)
    page = _int("page", 1)
    return _json({"total": len(found), "page": page, "per_page": per_page,
                  "pages": max(1, math.ceil(len(found) / per_page)),
                  "docs": found[(page - 1) * per_page: page * per_page]})


@bp.get(f"{PREFIX}/history/stats")
@access.token
def api_history_stats() -> Response:
    found = history.history_query(_docs(), **_history_args(prefix=""))
    return _json(history.history_stats(found))
