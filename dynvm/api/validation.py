"""Input validation for the legacy routes: one pydantic model per route (of the value
types in `dynvm.api.fields`).

Every query parameter is checked here, before the core is called, so that a
bad value is answered with a one-line 400 naming the parameter and what is
allowed, and never reaches a Xen host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dynvm.api.fields import (
    Count,
    Cpus,
    ExpiryBase,
    Flag,
    Format,
    HostRef,
    Labels,
    MemBytes,
    Minutes,
    MinutesOrZero,
    Name,
    NetworkId,
    Seconds,
    State,
    StaticPoolNames,
    shown,
)
from dynvm.api.formatting import echo
from dynvm.core.services import HistoryState, ServersRequest, Target


class InvalidParam(Exception):
    """A request parameter is unacceptable: answered with 400 and this message."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"bad parameter '{param}': {message}")
        self.param = param
        self.message = f"bad parameter '{param}': {message}"


def _check_os(value: Any, info: ValidationInfo) -> str:
    """An OS key some configured host serves; matched without regard to case."""
    text = str(value).strip()
    known: set[str] = set((info.context or {}).get("os_keys", ()))
    if text in known:
        return text
    for key in known:
        if key.lower() == text.lower():
            return key
    listed = ", ".join(sorted(known)) or "none configured"
    raise ValueError(f"unknown OS {shown(value)}; known: {listed}")


def _check_host_ref(value: int | None, info: ValidationInfo) -> int | None:
    if value is None:
        return None
    known: set[int] = set((info.context or {}).get("host_refs", ()))
    if value not in known:
        listed = ", ".join(str(r) for r in sorted(known)) or "none configured"
        raise ValueError(f"no configured host xenhost{value}; configured host numbers: {listed}")
    return value


class _Params(BaseModel):
    """Base: parameters by their query-string names; unknown ones are ignored.

    `default_word`: parameters for which the seed took the word `default` to
    mean "the OS's default" (its Jenkins helper sends `cpus=default&mem=default`
    on every request).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    default_word: ClassVar[frozenset[str]] = frozenset()


class ShowAllParams(_Params):
    os: str | None = None
    labels: Labels = frozenset()
    ignore_labels: Flag = Field(False, alias="ignorelabels")

    @field_validator("os", mode="before")
    @classmethod
    def _os(cls, value: Any, info: ValidationInfo) -> str | None:
        return None if value is None else _check_os(value, info)


class AvailableParams(_Params):
    os: str = Field("centos", validate_default=True)  # a farm may not serve centos
    labels: Labels = frozenset()
    ignore_labels: Flag = Field(False, alias="ignorelabels")
    all_labels: Flag = Field(False, alias="alllabels")

    @field_validator("os", mode="before")
    @classmethod
    def _os(cls, value: Any, info: ValidationInfo) -> str:
        return _check_os(value, info)


class GetServersParams(_Params):
    default_word: ClassVar[frozenset[str]] = frozenset({"cpus", "mem"})

    name: Name
    count: Count = 1
    os: str = Field("centos", validate_default=True)  # a farm may not serve centos
    cpus: Cpus | None = None
    mem: MemBytes | None = None
    expiresin: Minutes | None = None
    format: Format = "servermanager"
    labels: Labels = frozenset()
    ignore_labels: Flag = Field(False, alias="ignorelabels")
    xhostref: HostRef | None = None
    all_or_none: Flag = Field(True, alias="allornone")
    networkid: NetworkId | None = None
    check_vms: Flag = Field(False, alias="checkvms")
    pools: StaticPoolNames = ()
    wait: Seconds | None = None  # may wait this long in the queue (None: [queue]'s default)

    @field_validator("os", mode="before")
    @classmethod
    def _os(cls, value: Any, info: ValidationInfo) -> str:
        return _check_os(value, info)

    @field_validator("xhostref", mode="after")
    @classmethod
    def _ref(cls, value: int | None, info: ValidationInfo) -> int | None:
        return _check_host_ref(value, info)

    def to_request(self) -> ServersRequest:
        return ServersRequest(
            name=self.name,
            count=self.count,
            os=self.os,
            cpus=self.cpus,
            mem_bytes=self.mem,
            expires_in_minutes=self.expiresin,
            labels=self.labels,
            ignore_labels=self.ignore_labels,
            xhostref=self.xhostref,
            all_or_none=self.all_or_none,
            network_id=self.networkid,
            check_vms=self.check_vms,
            static_pools=self.pools,
            wait_secs=self.wait,
        )


class ReleaseParams(_Params):
    name: Name
    state: State | None = None
    count: Count | None = None

    def target(self) -> Target:
        """The seed's `/releaseservers/<prefix>/available` without count: every <prefix><N>."""
        if self.state == HistoryState.AVAILABLE and self.count is None:
            return Target.every_numbered(self.name)
        return Target.named(self.name, self.count)


class SetExpiryParams(_Params):
    name: Name
    minutes: MinutesOrZero
    base: ExpiryBase = Field("now", alias="from")
    count: Count | None = None

    def target(self) -> Target:
        return Target.named(self.name, self.count)


def _param_name(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    if not loc:
        return "?"
    field = model.model_fields.get(str(loc[0]))
    if field is not None and field.alias:
        return field.alias
    return str(loc[0])


M = TypeVar("M", bound=BaseModel)

DEFAULT_WORD = "default"


def is_absent(value: Any) -> bool:
    """The seed read parameters with `if request.args.get(p):`, so `p=` meant "not given"."""
    return value is None or value == ""


def means_default(model: type[BaseModel], param: str, value: Any) -> bool:
    """`param=default` where the seed took it for the default (see `_Params.default_word`)."""
    words: frozenset[str] = getattr(model, "default_word", frozenset())
    return param in words and isinstance(value, str) and value.strip().lower() == DEFAULT_WORD


def seed_values(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as the seed understood them: empty and `default` ones dropped,
    so the model's own default applies (count=1, os=centos, the OS's sizes...)."""
    return {k: v for k, v in values.items()
            if not is_absent(v) and not means_default(model, k, v)}


def parse_params(
    model: type[M], values: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> M:
    """Validate `values` into `model`; raise InvalidParam for the first bad parameter."""
    try:
        return model.model_validate(seed_values(model, values), context=dict(context or {}))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err.get("msg", "invalid value"))
        msg = "missing" if err.get("type") == "missing" else msg.removeprefix("Value error, ")
        raise InvalidParam(_param_name(model, tuple(err.get("loc", ()))), msg) from None


# -- the legacy routes' paths: `<name>` segments and what follows them ---------------------


def _one_name(path: str, what: str) -> str:
    """Route segments carry names; a name can never contain '/'."""
    if "/" in path:
        raise InvalidParam(
            "name", f"a VM name cannot contain '/' (got '{echo(path)}'); expected {what}"
        )
    return path


def getservers_params(path: str, query: Mapping[str, Any],
                      context: Mapping[str, Any]) -> GetServersParams:
    """`/getservers/<path>?<query>`, validated."""
    name = _one_name(path, "/getservers/<name>")
    return parse_params(GetServersParams, {**query, "name": name}, context)


def release_params(path: str, query: Mapping[str, Any]) -> ReleaseParams:
    """`/releaseservers/<path>?<query>`, validated: `.target()` is what it releases."""
    parts = path.split("/")
    if len(parts) > 2:
        raise InvalidParam("name", f"a VM name cannot contain '/' (got '{echo(path)}'); "
                                   "expected /releaseservers/<name> or /releaseservers/<name>/<state>")
    name, state = parts[0], (parts[1] if len(parts) == 2 else None)
    if state == "":
        raise InvalidParam("state", "empty; expected /releaseservers/<name>/<state>")
    values = {**query, "name": name}
    if state is not None:
        values["state"] = state
    return parse_params(ReleaseParams, values)


def setexpiry_params(path: str, query: Mapping[str, Any]) -> SetExpiryParams:
    """`/setexpiry/<path>?<query>`, validated: `.target()` is what it changes."""
    name, sep, minutes = path.rpartition("/")
    if not sep:
        raise InvalidParam("minutes", "missing: call /setexpiry/<name>/<minutes>")
    name = _one_name(name, "/setexpiry/<name>/<minutes>")
    return parse_params(SetExpiryParams, {**query, "name": name, "minutes": minutes})
