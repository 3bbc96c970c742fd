"""A VM's first-boot data as cloud-init reads it: the owner's keys, the
hostname and the owner's own `#cloud-config`, merged into one document.

The owner's document is the base; dynvm adds its keys to the default user's
`ssh_authorized_keys` (and to the template's login user: `disable_root:
false` when that is root, else a `users` entry), sets `hostname`, and
`ssh_pwauth: false` when password logins are to be off (and keys given). Lists the owner
wrote keep their items; a `hostname` of the owner's is refused, since the
request's own field says it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from dynvm.core.ports import FirstBoot

HEADER = "#cloud-config"
MAX_USER_DATA = 16 * 1024  # bytes, as the API documents it
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_HOSTNAME = 253


class BadUserData(ValueError):
    """The owner's cloud-config cannot be used; the message says why (never its text)."""


class BadHostname(ValueError):
    pass


def check_hostname(name: str) -> str:
    """An RFC 1123 host name (dot-separated labels of letters, digits, inner hyphens), lowered."""
    low = name.strip().lower()
    if not low or len(low) > MAX_HOSTNAME or not all(_LABEL.match(p) for p in low.split(".")):
        raise BadHostname("hostname must be letters, digits and inner hyphens, in labels of at "
                          f"most 63 characters separated by dots, {MAX_HOSTNAME} at most")
    return low


def hostname_for(vm_name: str) -> str:
    """The default hostname: the VM's name, made a valid host label."""
    label = re.sub(r"[^a-z0-9-]+", "-", vm_name.lower()).strip("-")[:63].strip("-")
    return label or "vm"


def check_user_data(text: str) -> dict[str, Any]:
    """The owner's `#cloud-config` as a mapping; BadUserData says what is wrong."""
    if len(text.encode()) > MAX_USER_DATA:
        raise BadUserData(f"user_data is over {MAX_USER_DATA // 1024} KiB")
    first = text.splitlines()[0].rstrip() if text.strip() else ""
    if first != HEADER:
        raise BadUserData(f"user_data must be a cloud-config document: its first line "
                          f"{HEADER!r}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadUserData(f"user_data is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BadUserData("user_data must be a YAML mapping")
    if "hostname" in doc:
        raise BadUserData("user_data sets hostname: give it as the request's hostname instead")
    return doc


def _with_keys(users: list[Any], user: str, keys: list[str]) -> list[Any]:
    """`users` with `keys` on `user`'s entry (added after `default` when absent)."""
    out = list(users) or ["default"]
    for i, entry in enumerate(out):
        if isinstance(entry, dict) and entry.get("name") == user:
            have = list(entry.get("ssh_authorized_keys") or [])
            out[i] = {**entry, "ssh_authorized_keys": have + [k for k in keys if k not in have]}
            return out
    return [*out, {"name": user, "ssh_authorized_keys": keys}]


def user_data(keys: Sequence[str], hostname: str, owner_doc: dict[str, Any] | None, *,
              login_user: str | None, password_login: bool) -> str:
    """The merged `#cloud-config` document (text)."""
    doc: dict[str, Any] = dict(owner_doc or {})
    keys = list(keys)
    if keys:
        have = list(doc.get("ssh_authorized_keys") or [])
        doc["ssh_authorized_keys"] = have + [k for k in keys if k not in have]
        if login_user == "root":
            doc["disable_root"] = False
        elif login_user:
            doc["users"] = _with_keys(list(doc.get("users") or []), login_user, keys)
    doc["hostname"] = hostname
    if not password_login and keys:  # never a VM nobody can log in to
        doc["ssh_pwauth"] = False
    return HEADER + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False,
                                          allow_unicode=True, width=1 << 16)


def first_boot(keys: Sequence[str], hostname: str, owner_doc: dict[str, Any] | None, *,
               login_user: str | None, password_login: bool) -> FirstBoot:
    return FirstBoot(hostname, user_data(keys, hostname, owner_doc, login_user=login_user,
                                         password_login=password_login))
