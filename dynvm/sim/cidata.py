"""A simulated cloud-init: reads a NoCloud config drive (an ISO 9660 volume
labelled `cidata` with `meta-data` and `user-data`) and configures the guest
image from it on the first boot of each instance id.

What it honours, as cloud-init does: `local-hostname` (meta-data) and
`hostname` (user-data, which wins); `ssh_authorized_keys` for the image's
default user (and root too with `disable_root: false`); `users` entries with
`ssh_authorized_keys` (the string `default` stands for the default user);
`ssh_pwauth: false` turns password logins off. Anything else is accepted
and ignored, and a drive that cannot be read changes nothing.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import pycdlib
import yaml
from pycdlib.pycdlibexception import PyCdlibException

from .guestimage import GuestImage

log = logging.getLogger(__name__)

LABEL = "cidata"


@dataclass
class Seed:
    instance_id: str
    hostname: str | None = None
    keys: dict[str, list[str]] = field(default_factory=dict)  # user -> key lines
    password_auth: bool | None = None  # None: leave sshd as the image has it


def _read(iso: pycdlib.PyCdlib, name: str) -> bytes | None:
    for kwargs in ({"rr_path": f"/{name}"}, {"joliet_path": f"/{name}"}):
        if (("rr_path" in kwargs and not iso.has_rock_ridge())
                or ("joliet_path" in kwargs and not iso.has_joliet())):
            continue
        out = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(out, **kwargs)
        except PyCdlibException:
            continue
        return out.getvalue()
    return None


def _yaml(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def read_seed(image: bytes, default_user: str) -> Seed | None:
    """The seed on a `cidata` volume, or None when `image` is no such drive."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(image))
    except (PyCdlibException, ValueError, OSError):
        return None
    try:
        label = iso.pvd.volume_identifier.decode(errors="replace").strip()
        if label.lower() != LABEL:
            return None
        meta = _yaml(_read(iso, "meta-data"))
        user_data = _read(iso, "user-data") or b""
    finally:
        iso.close()
    if not meta.get("instance-id"):
        return None
    seed = Seed(str(meta["instance-id"]), meta.get("local-hostname"))
    if not user_data.startswith(b"#cloud-config"):
        return seed
    config = _yaml(user_data)
    if config.get("hostname"):
        seed.hostname = str(config["hostname"])
    top = [str(k) for k in config.get("ssh_authorized_keys") or []]
    if top:
        seed.keys.setdefault(default_user, []).extend(top)
        if config.get("disable_root") is False:
            seed.keys.setdefault("root", []).extend(top)
    for entry in config.get("users") or []:
        if isinstance(entry, dict) and entry.get("name"):
            name = default_user if entry["name"] == "default" else str(entry["name"])
            seed.keys.setdefault(name, []).extend(
                str(k) for k in entry.get("ssh_authorized_keys") or [])
    if config.get("ssh_pwauth") is False:
        seed.password_auth = False
    return seed


def apply(image: GuestImage, seed: Seed) -> bool:
    """Configure `image` from `seed` unless this instance was configured already."""
    with image.lock:
        if image.instance_id == seed.instance_id:
            return False
        image.instance_id = seed.instance_id
        if seed.password_auth is not None:
            image.password_auth = seed.password_auth
    for user, keys in seed.keys.items():
        image.add_keys(user, keys)
    if seed.hostname:
        image.set_hostname(seed.hostname)
    return True
