"""Who may call which route: each view declares its access level beside its code.

One check runs before every view. A route is open only if it is declared so;
a view without a declaration needs an admin token whenever `[auth] legacy` is
not `open`, so a route added without thought fails closed.

| level          | open      | mutating | all      | what                                       |
|----------------|-----------|----------|----------|--------------------------------------------|
| `PUBLIC`       | anyone    | anyone   | anyone   | health, metrics, OpenAPI, static, sign-in  |
| `LEGACY_READ`  | anyone    | anyone   | a token  | /showall, /getavailablecount               |
| `LEGACY_WRITE` | anyone    | a token  | a token  | getservers, releaseservers, setexpiry      |
| `TOKEN`        | anyone    | a token  | a token  | dashboard, operator reads (owner-filtered) |
| `ADMIN`        | anyone    | admin    | admin    | drain, undrain, maintenance; undeclared    |
| `API`          | a token   | a token  | a token  | /api/v1                                    |

Which VMs a token's owner may act on is decided in the core (`dynvm.core.callers`).
Where a route takes its token: a bearer header always; `token=` on the legacy
routes; the dashboard's sign-in cookie on every route but /api/v1, and on a
state-changing request only together with its CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, current_app, g, request

from dynvm.api import auth
from dynvm.core.errors import Forbidden
from dynvm.core.services import EVERYONE, Caller

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm


class Access(Enum):
    PUBLIC = "public"
    LEGACY_READ = "legacy read"
    LEGACY_WRITE = "legacy write"
    TOKEN = "token"
    ADMIN = "admin"
    API = "api"


class Need(Enum):
    NOTHING = "nothing"
    TOKEN = "token"
    ADMIN = "admin token"


ATTR = "dynvm_access"
PAGE_ATTR = "dynvm_signin_page"
# Views Flask makes itself (static files) carry no attribute: declared here.
FLASK_VIEWS = {"static": Access.PUBLIC, "dashboard.static": Access.PUBLIC}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


def declare(level: Access, *, page: bool = False) -> Callable[[F], F]:
    """Mark a view's access level (`page`: a browser page, answered with the sign-in form)."""
    def mark(view: F) -> F:
        setattr(view, ATTR, level)
        if page:
            setattr(view, PAGE_ATTR, True)
        return view
    return mark


public = declare(Access.PUBLIC)
legacy_read = declare(Access.LEGACY_READ)
legacy_write = declare(Access.LEGACY_WRITE)
token = declare(Access.TOKEN)
admin = declare(Access.ADMIN)
api = declare(Access.API)


def level_of(app: Flask, endpoint: str) -> Access:
    """The declared level of an endpoint; ADMIN for one that declares none (fail closed)."""
    if endpoint in FLASK_VIEWS:
        return FLASK_VIEWS[endpoint]
    return getattr(app.view_functions.get(endpoint), ATTR, Access.ADMIN)


def needs(level: Access, mode: str) -> Need:
    """What a caller must present for a route of `level` under `[auth] legacy=mode`."""
    if level is Access.API:
        return Need.TOKEN
    if level is Access.PUBLIC or mode == "open":
        return Need.NOTHING
    if level is Access.LEGACY_READ and mode == "mutating":
        return Need.NOTHING
    return Need.ADMIN if level is Access.ADMIN else Need.TOKEN


def caller() -> Caller | None:
    """Who is calling, when the route asked for a token; None when it did not."""
    return g.get("dynvm_caller")


def viewer() -> Caller:
    """Whose VMs, requests and history this request may see (everyone's without [auth])."""
    return g.get("dynvm_caller") or EVERYONE


def _svc() -> Dynvm:
    return current_app.extensions["dynvm"]


def check() -> Response | None:
    """before_request of every route: authenticate as the route's level asks, or refuse."""
    auth.strip_token_param()  # whatever the mode: a token must never reach a log line
    g.pop("dynvm_caller", None)
    endpoint = request.endpoint
    if endpoint is None:  # no such route or method: the 404/405 answers
        return None
    rule = request.url_rule
    if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
        return None  # Flask's own answer: the methods allowed, nothing more
    level = level_of(current_app, endpoint)
    need = needs(level, _svc().access.settings().legacy)
    if need is Need.NOTHING:
        return None
    legacy = level in (Access.LEGACY_READ, Access.LEGACY_WRITE)
    changes = request.method not in SAFE_METHODS or level is Access.LEGACY_WRITE
    secret = auth.secret_of(request, allow_param=legacy, allow_cookie=level is not Access.API,
                            state_changing=changes)
    how = "`Authorization: Bearer <token>`" + (" or `token=`" if legacy else "")
    try:
        who = auth.authenticate(_svc(), secret, how)
    except auth.Unauthorized:
        if getattr(current_app.view_functions[endpoint], PAGE_ATTR, False):
            from dynvm.api.signin import form_page

            return form_page(status=401)
        raise
    if need is Need.ADMIN and not who.admin:
        raise Forbidden("Error: an admin token is needed for this route")
    g.dynvm_caller = who
    return None


# Every answer: no inline script, no framing, no type sniffing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def secure_headers(resp: Response) -> Response:
    # One pass over the answer's headers, not one per header added (every answer pays it).
    present = {name.lower() for name, _ in resp.headers.items()}
    for name, value in HEADERS.items():
        if name.lower() not in present:
            resp.headers.add(name, value)
    return resp


def install(app: Flask) -> None:
    app.before_request(check)
    app.after_request(secure_headers)
