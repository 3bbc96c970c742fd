"""event.from (and the legacy register/next) over the database's change log."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import datamodel
from .context import CallContext
from .wire import I4, Raw, XapiError

_TOKEN_FMT = "%020d,%020d"


def _token(gen: int) -> str:
    return _TOKEN_FMT % (gen, 0)


def _parse_token(token: str) -> int | None:
    """Generation after which events are wanted; None for "" (everything)."""
    if token == "":
        return None
    head = token.split(",", 1)[0].strip()
    try:
        gen = int(head)
    except ValueError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
    if gen < 0:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    return gen


@dataclass
class Subscription:
    classes: set[str] = field(default_factory=set)  # declared class names
    refs: dict[str, set[str]] = field(default_factory=dict)  # class -> refs (cls/ref form)
    everything: bool = False

    def wants(self, cls: str, ref: str) -> bool:
        if self.everything or cls in self.classes:
            return True
        return ref in self.refs.get(cls, ())

    def class_names(self) -> list[str] | None:
        if self.everything:
            return None
        return sorted(self.classes | set(self.refs))


def parse_subscription(items: list[str]) -> Subscription:
    sub = Subscription()
    for item in items:
        if item == "*":
            sub.everything = True
            continue
        name, _, ref = item.partition("/")
        cls = datamodel.CLASS_BY_LOWER.get(name.lower())
        if cls is None:
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", item)
        if ref:
            sub.refs.setdefault(cls, set()).add(ref)
        else:
            sub.classes.add(cls)
    return sub


def _event(gen: int, op: str, cls: str, ref: str, snapshot: Raw | None) -> dict[str, Any]:
    ev: dict[str, Any] = {"id": str(gen), "timestamp": "0.0", "class": cls.lower(),
                          "operation": op, "ref": ref}
    if snapshot is not None:
        ev["snapshot"] = snapshot
    return ev


def collect(ctx: CallContext, sub: Subscription, since: int | None) -> tuple[list[dict], int]:
    """Events after generation `since` (None: every object as `add`) and the new generation."""
    db = ctx.db
    events: list[dict[str, Any]] = []
    with db.lock:
        gen = db.generation
        names = sub.class_names()
        if since is None:
            for cls in names if names is not None else list(db.tables):
                for ref in db.tables.get(cls, {}):
                    if sub.wants(cls, ref):
                        events.append(_event(gen, "add", cls, ref, db.record_xml(cls, ref)))
        else:
            for g, op, cls, ref in db.changes_since(since, names):
                if not sub.wants(cls, ref):
                    continue
                snap = None if op == "del" else db.record_xml(cls, ref)
                events.append(_event(g, op, cls, ref, snap))
    return events, gen


def _ref_counts(ctx: CallContext, sub: Subscription) -> dict[str, I4]:
    names = sub.class_names()
    db = ctx.db
    with db.lock:
        return {cls.lower(): I4(len(db.tables.get(cls, {})))
                for cls in (names if names is not None else db.tables)}


def event_from(ctx: CallContext, classes: list[str], token: str, timeout: float) -> dict:
    sub = parse_subscription(classes)
    since = _parse_token(token)
    db = ctx.db
    deadline = time.monotonic() + max(0.0, float(timeout))
    session = ctx.session
    while True:
        events, gen = collect(ctx, sub, since)
        if events or since is None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with db.changed:
            if db.generation == gen:
                db.changed.wait(min(remaining, 1.0))
        if session is not None and session.local_host is None:
            ctx.pool.sessions.check(session.ref, ctx.host)
        since = gen  # nothing matched up to gen: the next round looks only past it
    return {"events": events, "valid_ref_counts": _ref_counts(ctx, sub), "token": _token(gen)}


# ------------------------------------------------------------- legacy API
class Registrations:
    """One pool's event.register state: session -> (classes, generation read up to)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subs: dict[str, tuple[list[str], int]] = {}


def _regs(ctx: CallContext) -> Registrations:
    return ctx.pool.event_registrations


def event_register(ctx: CallContext, classes: list[str]) -> None:
    parse_subscription(classes)
    regs = _regs(ctx)
    assert ctx.session is not None
    with regs.lock:
        old, _ = regs.subs.get(ctx.session.ref, ([], 0))
        regs.subs[ctx.session.ref] = (sorted(set(old) | set(classes)), ctx.db.generation)


def event_unregister(ctx: CallContext, classes: list[str]) -> None:
    regs = _regs(ctx)
    assert ctx.session is not None
    with regs.lock:
        if ctx.session.ref in regs.subs:
            old, gen = regs.subs[ctx.session.ref]
            regs.subs[ctx.session.ref] = ([c for c in old if c not in classes], gen)


def event_next(ctx: CallContext) -> list[dict]:
    regs = _regs(ctx)
    assert ctx.session is not None
    with regs.lock:
        reg = regs.subs.get(ctx.session.ref)
    if reg is None:
        raise XapiError("SESSION_NOT_REGISTERED", ctx.session.ref)
    classes, since = reg
    sub = parse_subscription(classes)
    while True:
        events, gen = collect(ctx, sub, since)
        if events:
            break
        with ctx.db.changed:
            if ctx.db.generation == gen:
                ctx.db.changed.wait(1.0)
        ctx.pool.sessions.check(ctx.session.ref, ctx.host)
        since = gen
    with regs.lock:
        if ctx.session.ref in regs.subs:
            regs.subs[ctx.session.ref] = (regs.subs[ctx.session.ref][0], gen)
    now = "%.6f" % time.time()
    for ev in events:
        ev["timestamp"] = now
    return events


def event_get_current_id(ctx: CallContext) -> int:
    return ctx.db.generation


def event_inject(ctx: CallContext, cls: str, ref: str) -> str:
    name = datamodel.CLASS_BY_LOWER.get(cls.lower(), cls)
    with ctx.db.lock:
        ctx.db.get(name, ref)
        ctx.db.modify(name, ref, {})
        return _token(ctx.db.generation)
