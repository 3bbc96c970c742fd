"""[xenhostN]: one XenServer pool master, its connection and the OSes it serves."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from dynvm.config.model import HostConfig, OsSpec, is_windows
from dynvm.config.sections import Section, split_list

WINDOWS_DEFAULTS = (12, 6, 71)  # vcpus, memory GiB, disk GiB for win* OS keys
OTHER_DEFAULTS = (8, 4, 35)
TEMPLATE_NETWORK = ".template.network"  # <os>.template.network: the seed's per-OS PIF device
HOST_KEYS = (
    "host.name",
    "host.user",
    "host.password",
    "host.storage.name",
    "host.labels",
    "host.network.id",
    "host.tls.verify",
    "host.tls.ca",
    "host.drain",
    "host.timeout.connect.secs",
    "host.timeout.call.secs",
)
HOST_VMS_MAX = "host.vms.max."
OS_ATTRS = ("template", "vcpus", "memory", "disk", "cloudinit")
_OS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def normalise_host_url(name: str) -> str:
    """Turn host.name (IP, host, host:port or URL) into the XAPI URL; ValueError if bad.

    A bare host means what it meant in the seed's file, http://host (the
    parser warns and recommends https://); a written scheme is kept.
    """
    name = name.strip()
    if not name:
        raise ValueError("is empty")
    if "://" not in name:
        try:  # a bare IPv6 address needs brackets to carry a port
            if ipaddress.ip_address(name).version == 6:
                name = f"[{name}]"
        except ValueError:
            pass
        name = "http://" + name
    parts = urlsplit(name)
    if "@" in parts.netloc:  # it would end up in logs, /health and history (origin)
        raise ValueError("must not carry a user or password (use host.user and host.password)")
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("scheme must be http or https")
    if not parts.hostname:
        raise ValueError("has no host")
    if any(c.isspace() for c in name):
        raise ValueError("must not contain spaces")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a bad port") from None
    if port == 0:
        raise ValueError("has a bad port")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"


def _resolve_path(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def parse_host(ref: int, s: Section, base: Path | None) -> HostConfig | None:
    p = s.p
    n_before = p.count()
    name = s.get_str("host.name", required=True)
    user = s.get_str("host.user", required=True)
    password = s.get_str("host.password", required=True)
    storage = s.get_str("host.storage.name", required=True)
    url = ""
    if name is not None:
        try:
            url = normalise_host_url(name)
        except ValueError as e:
            p.error(s.name, "host.name", f"{e} (write an IP, host, host:port or URL)")
        else:
            url = _seed_scheme(s, name, url)

    ca_file = s.get_str("host.tls.ca")
    if ca_file is not None:
        path = _resolve_path(ca_file, base)
        if not path.is_file():
            p.error(s.name, "host.tls.ca", "the CA bundle is not a readable file (a relative "
                    "path is taken from the INI file's directory)")
        ca_file = str(path)

    os_attrs: dict[str, dict[str, str]] = {}
    vms_max: dict[str, int] = {}
    template_networks = _template_networks(s)
    for key in s.raw:
        if key in HOST_KEYS or key.endswith(TEMPLATE_NETWORK):
            continue
        if key.startswith(HOST_VMS_MAX):
            os_key = key[len(HOST_VMS_MAX) :]
            if not _OS_NAME.fullmatch(os_key):
                p.error(s.name, key, "host.vms.max.<os> needs an OS key after the dot")
                continue
            vms_max[os_key] = s.get_int(key, 0, minimum=0)
            continue
        os_key, _, attr = key.rpartition(".")
        if attr in OS_ATTRS and _OS_NAME.fullmatch(os_key) and not key.startswith("host."):
            os_attrs.setdefault(os_key, {})[attr] = key
            continue
        candidates = list(HOST_KEYS) + [f"{o}.{a}" for o in os_attrs for a in OS_ATTRS]
        if os_key and not key.startswith("host."):
            candidates += [f"{os_key}.{a}" for a in OS_ATTRS]
        s.unknown(key, candidates)

    os_specs: dict[str, OsSpec] = {}
    for os_key, attrs in sorted(os_attrs.items()):
        if "template" not in attrs:
            p.warn(s.name, next(iter(attrs.values())),
                   f"sizes for {os_key} but no {os_key}.template: this host cannot serve {os_key}")
            for attr, key in attrs.items():  # still check them: a typo stays a typo
                if attr == "cloudinit":
                    s.get_bool(key, False)
                else:
                    s.get_int(key, 1)
            continue
        template = s.values.get(attrs["template"], "").strip()  # empty: reported already
        dv, dm, dd = WINDOWS_DEFAULTS if is_windows(os_key) else OTHER_DEFAULTS
        vcpus = s.get_int(attrs["vcpus"], dv) if "vcpus" in attrs else dv
        memory = s.get_int(attrs["memory"], dm) if "memory" in attrs else dm
        disk = s.get_int(attrs["disk"], dd) if "disk" in attrs else dd
        cloudinit = s.get_bool(attrs["cloudinit"], False) if "cloudinit" in attrs else False
        if template:
            os_specs[os_key] = OsSpec(os_key, template, vcpus, memory, disk, cloudinit)
    for os_key in vms_max:
        if os_key not in os_specs:
            p.warn(s.name, HOST_VMS_MAX + os_key,
                   f"cap for {os_key} but this host has no {os_key}.template")

    host = HostConfig(
        ref=ref,
        name=name or "",
        url=url,
        user=user or "",
        password=password or "",
        storage_name=storage or "",
        labels=split_list(s.values.get("host.labels", "")),
        network_id=s.get_str("host.network.id"),
        template_networks={k: v for k, v in template_networks.items() if k in os_specs},
        vms_max=vms_max,
        os=os_specs,
        verify_tls=s.get_bool("host.tls.verify", True),
        drain=s.get_bool("host.drain", False),
        ca_file=ca_file,
        connect_timeout=s.get_float("host.timeout.connect.secs", 5.0),
        call_timeout=s.get_float("host.timeout.call.secs", 60.0),
    )
    return host if p.count() == n_before else None


def _seed_scheme(s: Section, name: str, url: str) -> str:
    """The seed's bare `host.name=IP` is plain http: accepted, with advice.

    A section that sets host.tls.verify or host.tls.ca (keys the seed never
    had) asks for TLS, so its bare host keeps https.
    """
    if "://" in name:
        return url
    secure = "https://" + url.removeprefix("http://")
    if "host.tls.ca" in s.raw or "host.tls.verify" in s.raw:
        return secure
    s.p.warn(s.name, "host.name",
             f"no scheme: XAPI is spoken over plain http ({url}) as the seed did, so the "
             f"host password crosses the network unencrypted; write host.name={secure} "
             "to use https with certificate verification")
    return url


def _template_networks(s: Section) -> dict[str, str]:
    """`<os>.template.network=<PIF device>`: the seed's network for one OS on this host."""
    out: dict[str, str] = {}
    for key in s.raw:
        if not key.endswith(TEMPLATE_NETWORK) or key.startswith("host."):
            continue
        os_key = key[: -len(TEMPLATE_NETWORK)]
        if not _OS_NAME.fullmatch(os_key):
            s.p.error(s.name, key, "<os>.template.network needs an OS key before the dot")
            continue
        device = s.get_str(key)
        if device is not None:
            out[os_key] = device
        if f"{os_key}.template" not in s.raw:
            s.p.warn(s.name, key, f"network for {os_key} but no {os_key}.template: unused")
    return out
