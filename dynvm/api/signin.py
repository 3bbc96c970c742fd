"""The dashboard's sign-in: a form that takes a token and keeps it in a cookie.

The cookie holds the token itself, `HttpOnly; SameSite=Strict` (and `Secure`
over https), so the browser sends it back on every page and refresh while no
script can read it. The form carries a one-time value that must match a
cookie of its own, so another site cannot sign a browser in with its token.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from dynvm.api import access, auth

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm

bp = Blueprint("signin", __name__, template_folder="templates")

FORM_COOKIE = "dynvm_signin"


def _https() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def _local(target: str) -> str:
    """Only a path of this site to go back to (never //host or a scheme)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def form_page(status: int = 200, message: str = "") -> Response:
    """The sign-in form; also the answer of a page asked for without a token."""
    nonce = secrets.token_urlsafe(16)
    nxt = _local(request.form.get("next") or request.args.get("next")
                 or (request.full_path.rstrip("?") if request.method == "GET" else "/"))
    if nxt.startswith("/ui/signin"):
        nxt = "/"
    resp = Response(render_template("dashboard/signin.html", nonce=nonce, next=nxt,
                                    message=message), status=status, mimetype="text/html")
    resp.set_cookie(FORM_COOKIE, nonce, httponly=True, samesite="Strict", secure=_https(),
                    path="/ui/signin")
    return resp


@bp.get("/ui/signin")
@access.public
def show() -> Response:
    return form_page()


@bp.post("/ui/signin")
@access.public
def sign_in() -> BaseResponse:
    svc: Dynvm = current_app.extensions["dynvm"]
    sent, kept = request.form.get("nonce", ""), request.cookies.get(FORM_COOKIE, "")
    if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        return form_page(400, "The form expired: please sign in again.")
    secret = request.form.get("token", "").strip()
    try:
        auth.authenticate(svc, secret, "a token")
    except auth.Unauthorized as exc:
        return form_page(401, exc.message)
    resp = redirect(_local(request.form.get("next", "/")), code=303)
    resp.set_cookie(auth.COOKIE, secret, httponly=True, samesite="Strict", secure=_https(),
                    path="/")
    resp.delete_cookie(FORM_COOKIE, path="/ui/signin")
    return resp


@bp.post("/ui/signout")
@access.public
def sign_out() -> BaseResponse:
    """Forget the cookie; asked with the page's CSRF token, so no other site can do it."""
    secret = request.cookies.get(auth.COOKIE, "")
    given = request.form.get(auth.CSRF_FIELD, "")
    if secret and not hmac.compare_digest(given.encode(), auth.csrf_of(secret).encode()):
        return Response("Error: missing or wrong CSRF token\n", status=403,
                        content_type="text/plain; charset=utf-8")
    resp = redirect("/ui/signin", code=303)
    resp.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="Strict",
                       secure=_https())
    return resp
