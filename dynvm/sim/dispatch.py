"""From a decoded methodCall to an XAPI answer: name resolution, argument
checks, sessions, faults, Async tasks, then a behaviour handler or the generic
field/record handlers that the datamodel's tables make possible.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import datamodel
from .context import CallContext, Handler
from .datamodel import MessageSpec
from .handlers import HANDLERS
from .wire import DateTime, Raw, XapiError, decode_request, failure, success

if TYPE_CHECKING:
    from .farm import Farm, SimHost


# Parameters newer xapi versions accept that xenapi.json (2024-03) does not list.
EXTRA_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "host.disable": (("auto_enable", "bool"),),
}


@dataclass(frozen=True)
class Resolved:
    cls: str
    msg: str
    spec: MessageSpec
    params: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        return f"{self.cls}.{self.msg}"


_CLASS_NAMES = sorted(datamodel.CLASSES, key=len, reverse=True)
_resolve_cache: dict[str, Resolved | None] = {}
_resolve_lock = threading.Lock()


def resolve(name: str) -> Resolved | None:
    """`VM.get_record` or `VM_get_record` (no Async prefix) -> its message."""
    hit = _resolve_cache.get(name, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    found: Resolved | None = None
    candidates: list[tuple[str, str]] = []
    if "." in name:
        candidates.append(tuple(name.split(".", 1)))  # type: ignore[arg-type]
    else:
        for cls in _CLASS_NAMES:
            if name.startswith(cls + "_"):
                candidates.append((cls, name[len(cls) + 1:]))
    for cls, msg in candidates:
        spec = datamodel.CLASSES.get(cls)
        if spec is not None and msg in spec.messages:
            m = spec.messages[msg]
            found = Resolved(cls, msg, m, m.params + EXTRA_PARAMS.get(f"{cls}.{msg}", ()))
            break
    with _resolve_lock:
        if found is not None or len(_resolve_cache) < 10_000:  # junk names must not grow it
            _resolve_cache[name] = found
    return found


def to_wire(type_: str | None, value: Any) -> Any:
    if type_ == "datetime" and isinstance(value, str) and not isinstance(value, Raw):
        return DateTime(value)
    return value


def _coerce_args(res: Resolved, method: str, args: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for (pname, ptype), value in zip(res.params, args, strict=False):
        try:
            if ptype.endswith(" record") and isinstance(value, dict):
                cls = ptype[: -len(" record")]
                fields = datamodel.CLASSES[cls].fields
                value = {k: datamodel.coerce(fields[k].type, v) for k, v in value.items()
                         if k in fields}
            else:
                value = datamodel.coerce(ptype, value)
        except (ValueError, TypeError, KeyError) as exc:
            raise XapiError("FIELD_TYPE_ERROR", pname) from exc
        out.append(value)
    return out


class Dispatcher:
    """Turns request bodies received by one farm's listeners into answers."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    def handle(self, host: SimHost, body: bytes, local: bool = False) -> bytes | None:
        """The response body, or None when the request is not XML-RPC (HTTP 500).
        `local`: the request came over the host's local socket."""
        try:
            method, params = decode_request(body)
        except ValueError:
            return None
        farm = self.farm
        farm.faults.count(host.name_label, method)
        delay = farm.timing.scaled(farm.timing.call_latency) + farm.faults.slow.get(
            host.name_label, 0.0)
        if delay > 0:
            time.sleep(delay)
        try:
            return success(self.call(host, method, params, local))
        except XapiError as exc:
            return failure(exc.description)
        except Exception as exc:  # xapi turns every bug into INTERNAL_ERROR
            traceback.print_exc()
            return failure(["INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"])

    def call(self, host: SimHost, method: str, params: tuple[Any, ...],
             local: bool = False) -> Any:
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method  # xapi names the call without the prefix
        res = resolve(name)
        self.farm.faults.wait_held(method, res.key if res else method)
        fail = self.farm.faults.take_failure(host.name_label, method,
                                             res.key if res else method)
        if fail and not (is_async and res is not None and res.spec.has_async):
            raise XapiError(*fail)
        fn = handler_for(res) if res is not None else None
        if res is None or fn is None:
            # A message the simulator does not model answers as xapi answers
            # a name it does not know: before any session or argument check.
            raise XapiError("MESSAGE_METHOD_UNKNOWN", name)
        spec = res.spec
        if is_async and not spec.has_async:
            raise XapiError("Fault", f"No async mode for this operation (rpc: {method})")
        nargs = len(params) - (1 if spec.session else 0)
        if not spec.session or params:
            if not spec.min_params <= nargs <= len(res.params):
                raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, len(res.params), nargs)
        else:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, len(res.params), -1)
        pool = host.pool
        ctx = CallContext(self.farm, pool, host, method, local=local)
        if spec.session:
            ctx.session = pool.sessions.check(params[0], host)
            params = params[1:]
        args = _coerce_args(res, method, params)
        if not is_async:
            return to_wire(spec.result, fn(ctx, *args))
        task = pool.tasks.create(method, host.ref)
        ctx.task = task
        if fail:  # an injected fault of an Async call fails its task, as real errors do
            pool.tasks.finish(task, "failure", error=fail)
            return task

        def run(c: CallContext, *a: Any) -> Any:
            return to_wire(spec.result, fn(c, *a))

        pool.tasks.run(ctx, run, tuple(args))
        return task


# --------------------------------------------------------------- generic
def _field_edit(cls: str, fname: str, change: Callable[..., Any]) -> Callable[..., None]:
    """A generic map or set accessor (add_to_/remove_from_/add_/remove_ <field>).

    `change(current, ref, *args)` answers the field's new value, or None when
    the call changes nothing (removing what is absent, adding to a set what
    is in it: no error in XAPI, and no event).
    """
    def edit(ctx: CallContext, ref: str, *args: Any) -> None:
        with ctx.db.lock:
            new = change(ctx.db.get(cls, ref)[fname], ref, *args)
            if new is not None:
                ctx.db.modify(cls, ref, {fname: new})

    return edit


@functools.cache
def handler_for(res: Resolved) -> Handler | None:
    """The behaviour that serves `res`: its entry in the handler table, else a
    generic record, field or map accessor; None when the simulator does not
    implement the message."""
    return HANDLERS.get(res.key) or _generic_for(res)


def _generic_for(res: Resolved) -> Handler | None:
    cls, msg = res.cls, res.msg
    fields = datamodel.CLASSES[cls].fields

    if msg == "get_record":
        return lambda ctx, ref: ctx.db.record_xml(cls, ref)
    if msg == "get_all":
        return lambda ctx: list(ctx.db.tables[cls])
    if msg == "get_all_records":
        return lambda ctx: ctx.db.all_records_xml(cls)
    if msg == "get_all_records_where":
        return lambda ctx, _expr: ctx.db.all_records_xml(cls)
    if msg == "get_by_uuid":
        return lambda ctx, u: ctx.db.by_uuid(cls, u)
    if msg == "get_by_name_label":
        return lambda ctx, label: ctx.db.select(cls, name_label=label)
    if msg == "create" and res.params and res.params[0][1].endswith(" record"):
        return lambda ctx, rec: ctx.db.create(cls, rec)
    if msg == "destroy":
        return lambda ctx, ref: (ctx.db.get(cls, ref), ctx.db.destroy(cls, ref))[1]
    if msg.startswith("get_") and msg[4:] in fields:
        fname = msg[4:]

        def getter(ctx: CallContext, ref: str) -> Any:  # Dispatcher.call applies to_wire
            with ctx.db.lock:
                value = ctx.db.get(cls, ref)[fname]
                if isinstance(value, (list, dict)):
                    value = value.copy()
            return value

        return getter
    if msg.startswith("set_") and msg[4:] in fields:
        fname = msg[4:]

        def setter(ctx: CallContext, ref: str, value: Any) -> None:
            with ctx.db.lock:
                ctx.db.get(cls, ref)
                ctx.db.modify(cls, ref, {fname: value})

        return setter
    if msg.startswith("add_to_") and msg[7:] in fields:
        def add_to(cur: dict[str, Any], ref: str, key: str, value: Any) -> dict[str, Any]:
            if key in cur:
                raise XapiError("MAP_DUPLICATE_KEY", cls, msg[7:], ref, key)
            return {**cur, key: value}

        return _field_edit(cls, msg[7:], add_to)
    if msg.startswith("remove_from_") and msg[12:] in fields:
        return _field_edit(cls, msg[12:], lambda cur, ref, key: (
            {k: v for k, v in cur.items() if k != key} if key in cur else None))
    if msg.startswith("add_") and msg[4:] in fields:
        return _field_edit(cls, msg[4:], lambda cur, ref, value: (
            [*cur, value] if value not in cur else None))
    if msg.startswith("remove_") and msg[7:] in fields:
        return _field_edit(cls, msg[7:], lambda cur, ref, value: (
            [v for v in cur if v != value] if value in cur else None))
    return None
