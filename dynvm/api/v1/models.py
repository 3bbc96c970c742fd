"""The v1 API's bodies and query strings: one set of pydantic models validates them and
generates the OpenAPI document, so the two cannot drift apart."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from dynvm.api.fields import MAX_MINUTES  # a year: the configured maximum lease bounds it further
from dynvm.core.services import RequestState, Step

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$"
OS_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
REQUEST_ID = r"^[0-9a-f]{32}$"
MAX_KEYS = 10
MAX_KEY_LINE = 2048  # an RSA key of 8192 bits is about 1.4 KiB; the body stays under 64 KiB
MAX_USER_DATA = 16 * 1024  # characters here; the core counts the bytes

re_name = re.compile(NAME.rstrip("$") + r"\Z")
Label = Annotated[str, StringConstraints(pattern=LABEL)]


def _whole(value: Any) -> Any:
    """JSON Schema's `integer` is any number without a fraction: 8.0 is 8, 8.5 is not one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A body's whole number, as the document's `"type": "integer"` means it (strict otherwise:
# "8" and true stay refused).
Whole = Annotated[int, BeforeValidator(_whole)]
# (Optional the same way, the validator outside the union: the bounds then reach the schema.)
WholeOrNone = Annotated[int | None, BeforeValidator(_whole)]


class _In(BaseModel):
    """Bodies: no unknown fields, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Query(BaseModel):
    """Query strings arrive as text: numbers are parsed, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- requests ------------------------------------------------------------------------------

KEY_ID = r"^[A-Za-z0-9_-]{43}$"


class RequestIn(_In):
    """Ask for `count` VMs of `os`; answered at once with 202, built in the background."""

    os: str = Field(pattern=OS_KEY, description="OS key, as served by the farm (`centos`, ...)")
    count: Whole = Field(1, ge=1, le=100)
    name: str | None = Field(None, pattern=NAME, description=(
        "VM name (count 1) or name prefix (`<name>1 … <name>N`); generated when absent"))
    cpus: WholeOrNone = Field(None, ge=1, le=256)
    memory_gib: WholeOrNone = Field(None, ge=1, le=4096)
    lease_minutes: WholeOrNone = Field(None, ge=1, le=MAX_MINUTES, description=(
        "lease length; capped by the configured maximum lease"))
    labels: list[Label] = Field(default_factory=list, max_length=16)
    host: WholeOrNone = Field(None, ge=1, le=1_000_000, description="only this [xenhostN]")
    all_or_none: bool = True
    check_ssh: bool = False
    ssh_keys: list[Annotated[str, StringConstraints(max_length=MAX_KEY_LINE)]] = Field(
        default_factory=list, max_length=MAX_KEYS, description=(
            "OpenSSH public keys (`ssh-ed25519 AAAA... comment`) put on every VM, with "
            "the keys the owner registered (`/api/v1/keys`)"))
    hostname: str | None = Field(None, min_length=1, max_length=253, description=(
        "the VMs' hostname (numbered `web1`, `web2`... for several); default: each VM's "
        "name"))
    user_data: str | None = Field(None, max_length=MAX_USER_DATA, description=(
        "a `#cloud-config` document (16 KiB at most) for cloud-init at first boot; shown "
        "to its owner and admins only"))
    queue: bool = Field(True, description=(
        "no room now: wait in the queue (202, `queued`) instead of a 503"))
    priority: Whole = Field(0, ge=0, le=100, description=(
        "in the queue, higher first; capped by the owner's `priority.max`"))
    max_wait_minutes: WholeOrNone = Field(None, ge=1, le=MAX_MINUTES, description=(
        "longest wait in the queue, then `expired`; capped by `[queue] max_wait_minutes.max`"))


class QueueOut(_Out):
    """The request's time in the queue."""

    reason: str
    since: float
    deadline: float
    priority: int
    waited: float
    position: int | None = None
    waiting: int | None = None
    eta_secs: float | None = None


class VmProgressOut(_Out):
    name: str
    step: Step
    since: float
    ip: str = ""
    reason: str = ""
    host: int | None = None


class RequestOut(_Out):
    id: str
    state: RequestState
    cancelling: bool = False
    owner: str
    os: str
    count: int
    names: list[str]
    created: float
    finished: float | None = None
    expires: float | None = None
    error: str | None = None
    vms: list[VmProgressOut]
    ssh_keys: list[str] = Field(default_factory=list, description="fingerprints of the "
                                "keys its VMs get")
    hostname: str | None = None
    user_data: str | None = None
    queue: QueueOut | None = None


class RequestList(_Out):
    requests: list[RequestOut]


class WaitQuery(_Query):
    wait: float = Field(0, ge=0, le=120, description="long poll: answer once something changes")


# -- VMs ----------------------------------------------------------------------------------

class VmOut(_Out):
    name: str
    owner: str
    os: str
    state: str
    ip: str
    host: int
    created: float
    expires: float
    request_id: str
    labels: list[str]
    ssh_user: str | None = Field(None, description="the template's login user (`dynvm ssh`)")
    ssh_port: int = 22
    ssh_keys: list[str] = Field(default_factory=list, description=(
        "fingerprints of the owner's keys the VM was given"))


class VmList(_Out):
    vms: list[VmOut]


class VmQuery(_Query):
    owner: str | None = Field(None, pattern=NAME)
    os: str | None = Field(None, pattern=OS_KEY)
    host: int | None = Field(None, ge=1, le=1_000_000)
    state: str | None = Field(None, pattern=r"^[a-z]{1,20}$")


class ExtendIn(_In):
    minutes: Whole = Field(ge=1, le=MAX_MINUTES, description=(
        "new expiry: now + minutes; at most the configured maximum lease (`vm.expiry.minutes`, "
        "the maximum this document gives)"))


SnapshotName = Annotated[str, StringConstraints(pattern=NAME)]


class SnapshotIn(_In):
    name: SnapshotName | None = Field(default=None, description=(
        "the snapshot's name; default: the VM's name and the time, e.g. `web1-20261207T1754`"))


class RevertIn(_In):
    snapshot: SnapshotName | None = Field(default=None, description=(
        "the snapshot to revert to; default: the newest"))


class SnapshotOut(_Out):
    vm: str
    name: str
    uuid: str
    taken: str = Field(description="when it was taken: XAPI's UTC stamp, e.g. "
                                   "`20261207T17:54:02Z`")


class RevertOut(SnapshotOut):
    ip: str = Field(description=(
        "the VM's address after the revert: a running VM is started again and may get "
        "another one; empty when the VM was halted"))


class SnapshotList(_Out):
    vm: str
    snapshots: list[SnapshotOut] = Field(description="oldest first")
    max: int = Field(description="the most snapshots one VM may have (`vm.snapshots.max`)")


# -- farm -----------------------------------------------------------------------------------

class OsCapacity(_Out):
    os: str
    by_label: dict[str, int] = Field(description="label -> VMs that fit; `default` is "
                                                 "the unlabelled hosts")


class CapacityOut(_Out):
    capacity: list[OsCapacity]


class HostOut(_Out):
    ref: int
    url: str
    labels: list[str]
    os: list[str]
    drain: bool
    reachable: bool
    members: int
    vms: int


class HostList(_Out):
    hosts: list[HostOut]


class HistoryQuery(_Query):
    owner: str | None = Field(None, pattern=NAME)
    os: str | None = Field(None, pattern=OS_KEY)
    since: float | None = Field(None, ge=0, le=1e11, description="epoch seconds, inclusive")
    until: float | None = Field(None, ge=0, le=1e11, description="epoch seconds, exclusive")
    page: int = Field(1, ge=1, le=100000)
    per_page: int = Field(50, ge=1, le=500)


class HistoryOut(_Out):
    items: list[dict[str, Any]]
    page: int
    next_page: int | None


class Limits(_Out):
    vms: int | None
    vcpus: int | None
    memory_gib: int | None


class Used(_Out):
    vms: int
    vcpus: int
    memory_gib: float


class QuotaOut(_Out):
    owner: str
    limits: Limits
    usage: Used


class QuotaQuery(_Query):
    owner: str | None = Field(None, pattern=NAME, description="another owner's (admins)")


class Problem(_Out):
    """RFC 7807 problem details."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""


# -- keys ------------------------------------------------------------------------------------

class KeyIn(_In):
    key: str = Field(min_length=1, max_length=MAX_KEY_LINE,
                     description="one OpenSSH public key line (`ssh-ed25519 AAAA... comment`)")


class KeyOut(_Out):
    id: str = Field(description="the fingerprint as a path segment (`DELETE /keys/{id}`)")
    fingerprint: str
    type: str
    comment: str
    added: float


class KeyList(_Out):
    keys: list[KeyOut]
