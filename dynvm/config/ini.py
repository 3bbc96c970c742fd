"""The seed's INI format read into a Config, validated with every problem listed at once.

An operator fixing a farm file at night should not have to play whack-a-mole,
so `parse_config` reports all problems of a file together, each naming file,
line, section and key.

Over 400 lines by design: the key tables, the section reader and the
cross-section checks are one format and change together.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dynvm.config.model import (
    AuthConfig,
    Config,
    CouchbaseConfig,
    GuestLogin,
    HostConfig,
    OsSpec,
    PoolConfig,
    QuotaLimits,
    StaticPoolConfig,
    StoreConfig,
    is_windows,
)
from dynvm.digits import parse_float, parse_int

WINDOWS_DEFAULTS = (12, 6, 71)  # vcpus, memory GiB, disk GiB for win* OS keys
OTHER_DEFAULTS = (8, 4, 35)



class ConfigError(Exception):
    """The file does not parse or validate; the message says where and why.

    `problems` holds one line per problem, each naming file, line, section and
    key, so the health endpoint and the log can show them as they are.
    """

    def __init__(self, problems: list[str], source: str = "<string>") -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"configuration {source} refused: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems))



# --------------------------------------------------------------------------- keys

COMMON_KEYS: dict[str, str] = {
    "vm.expiry.minutes": "expiry_minutes_max",
    "vm.default.expiry.minutes": "default_expiry_minutes",
    "vm.network.timeout.secs": "network_timeout_secs",
    "vm.parallel.per.host": "per_host_parallel",
    "vm.ssh.port": "ssh_port",
}
COMMON_BOOL_KEYS: dict[str, str] = {"inventory.cache": "inventory_cache"}
COMMON_FLOAT_KEYS: dict[str, str] = {"background.leader.ttl.secs": "leader_ttl_secs"}
COUCHBASE_KEYS = (
    "couchbase.server",
    "couchbase.bucket",
    "couchbase.username",
    "couchbase.userpassword",
    "couchbase.scope",
    "couchbase.collection",
)
STATIC_POOL_KEYS = ("static.server", "static.bucket", "static.username", "static.userpassword")
GUEST_LOGIN_KEYS = {  # the seed's checkvms credentials, in [common]
    "linux": ("vm.linux.username", "vm.linux.password"),
    "windows": ("vm.windows.username", "vm.windows.password"),
}
TEMPLATE_NETWORK = ".template.network"  # <os>.template.network: the seed's per-OS PIF device
STORE_KEYS = ("backend", "sqlite.path", "outbox.path")
STORE_BACKENDS = ("sqlite", "couchbase")
POOL_KEYS = ("ready", "labels", "ready.ttl.minutes")
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
OS_ATTRS = ("template", "vcpus", "memory", "disk")
SECRET_KEYS = frozenset({"host.password", "couchbase.userpassword", "static.userpassword",
                         "vm.linux.password", "vm.windows.password"})

_HOST_SECTION = re.compile(r"xenhost([0-9]+)")  # ASCII digits: `\d` takes 'xenhost١'
# A line that may hold a secret (even one malformed, as `host.password hunter2`)
# is never echoed in a problem report: those reach the log and /health.
_SECRET_HINT = re.compile(r"pass|secret|token|credential|api[_.-]?key|private", re.I)
_POOL_SECTION = re.compile(r"pool\s+(\S+)")
_QUOTA_SECTION = re.compile(r"quota(?:\s+(\S+))?")
AUTH_KEYS = ("legacy", "fail.limit", "fail.window.secs")
AUTH_LEGACY = ("open", "mutating", "all")
QUOTA_KEYS = ("vms", "vcpus", "memory_gib")
_OS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


# ------------------------------------------------------------------------ parsing


class _Problems:
    """Collects problems with their location so they can be reported together."""

    def __init__(self, source: str, lines: dict[tuple[str, str | None], int]) -> None:
        self.source = source
        self.lines = lines
        self._errors: list[tuple[int, int, str]] = []
        self._warnings: list[tuple[int, int, str]] = []

    @property
    def errors(self) -> list[str]:
        """In file order, so the report reads top to bottom like the file."""
        return [m for _, _, m in sorted(self._errors)]

    @property
    def warnings(self) -> list[str]:
        return [m for _, _, m in sorted(self._warnings)]

    def _where(self, section: str | None, key: str | None) -> tuple[int, str]:
        line = self.lines.get((section, key)) if section is not None else None
        if line is None and section is not None:
            line = self.lines.get((section, None))
        loc = f"{self.source}:{line}" if line else self.source
        if section is None:
            return line or 0, f"{loc}: "
        return line or 0, f"{loc}: [{section}] {key + ': ' if key else ''}"

    def error(self, section: str | None, key: str | None, what: str) -> None:
        line, where = self._where(section, key)
        self._errors.append((line, len(self._errors), where + what))

    def at_line(self, line: int, what: str) -> None:
        self._errors.append((line, len(self._errors), f"{self.source}:{line}: {what}"))

    def warn(self, section: str | None, key: str | None, what: str) -> None:
        line, where = self._where(section, key)
        self._warnings.append((line, len(self._warnings), where + what))

    def count(self) -> int:
        return len(self._errors)


def _line_index(text: str) -> dict[tuple[str, str | None], int]:
    """Line numbers of section headers and keys, for messages (first wins)."""
    index: dict[tuple[str, str | None], int] = {}
    section: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and "]" in line:
            section = line[1 : line.rindex("]")]  # as configparser reads it
            index.setdefault((section, None), n)
        elif section is not None and not raw[:1].isspace():
            m = re.match(r"([^=:]+?)\s*[=:]", line)
            if m:
                index.setdefault((section, m.group(1)), n)
    return index


def _quoted_line(line: str) -> str:
    """A line of the file for a problem report: quoted, cut short, secrets hidden."""
    if _SECRET_HINT.search(line):
        key = re.split(r"[\s=:]", line.strip(), maxsplit=1)[0]
        return f"{key[:60]!r} (rest of the line hidden: it may hold a secret)"
    text = repr(line)
    return text if len(text) <= 100 else text[:96] + "...'"


def _suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _split_list(value: str) -> frozenset[str]:
    return frozenset(p.strip() for p in value.split(",") if p.strip())


class _Section:
    """One section's values with `${ENV}` expanded and typed getters that record problems."""

    def __init__(self, name: str, raw: Mapping[str, str], env: Mapping[str, str], p: _Problems):
        self.name = name
        self.p = p
        self.raw = dict(raw)
        self.values: dict[str, str] = {}
        for key, value in self.raw.items():
            expanded = self._expand(key, value, env)
            if expanded is not None:
                self.values[key] = expanded

    def _expand(self, key: str, value: str, env: Mapping[str, str]) -> str | None:
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                missing.append(m.group(1))
                return ""
            return env[m.group(1)]

        out = _ENV_REF.sub(sub, value)
        for name in missing:
            self.p.error(self.name, key, f"environment variable {name} is not set")
        if "${" in _ENV_REF.sub("", value):
            self.p.error(self.name, key, "malformed ${...} reference (write ${NAME})")
            return None
        return None if missing else out

    def _shown(self, key: str) -> str:
        # Echo what the file says, never a secret nor what came from the environment.
        if key in SECRET_KEYS or _SECRET_HINT.search(key) or "${" in self.raw.get(key, ""):
            return ""
        return f", got {self.raw[key]!r}"

    def get_str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if key not in self.values:
            if key not in self.raw and required:
                self.p.error(self.name, None, f"missing required key {key}")
            return default
        value = self.values[key].strip()
        if not value:
            if required:
                self.p.error(self.name, key, "must not be empty")
            return default
        if "\n" in value:  # an indented next line continues the value: never meant
            self.p.error(self.name, key, "must be one line (the next line is indented, so it "
                         "was read as part of this value; its text is not shown)")
            return default
        return value

    def get_int(self, key: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        value = self.get_str(key)
        if value is None:
            return default
        try:
            n = parse_int(value)
        except ValueError:
            self.p.error(self.name, key, f"must be a whole number{self._shown(key)}")
            return default
        if n < minimum or (maximum is not None and n > maximum):
            bound = "a positive number" if minimum == 1 else f"at least {minimum}"
            if maximum is not None:
                bound = f"between {minimum} and {maximum}"
            self.p.error(self.name, key, f"must be {bound}{self._shown(key)}")
            return default
        return n

    def get_float(self, key: str, default: float) -> float:
        value = self.get_str(key)
        if value is None:
            return default
        try:
            x = parse_float(value)
        except ValueError:
            self.p.error(self.name, key, f"must be a number of seconds{self._shown(key)}")
            return default
        if not x > 0 or x == float("inf"):
            self.p.error(self.name, key, f"must be a positive number{self._shown(key)}")
            return default
        return x

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.get_str(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.p.error(self.name, key, f"must be true or false{self._shown(key)}")
        return default

    def unknown(self, key: str, candidates: list[str] | tuple[str, ...]) -> None:
        self.p.error(self.name, key, "unknown key" + _suggest(key, candidates))

    def only(self, known: list[str] | tuple[str, ...]) -> None:
        """Report every key of the section that is not one of `known`."""
        for key in self.raw:
            if key not in known:
                self.unknown(key, known)


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
        raise ValueError(f"scheme must be http or https, got {parts.scheme!r}")
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


def _parse_host(ref: int, s: _Section, base: Path | None) -> HostConfig | None:
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
            shown = "" if "@" in name else f", got {name!r}"  # never echo a password
            p.error(s.name, "host.name", f"{e}{shown} (write an IP, host, host:port or URL)")
        else:
            url = _seed_scheme(s, name, url)

    ca_file = s.get_str("host.tls.ca")
    if ca_file is not None:
        path = _resolve_path(ca_file, base)
        if not path.is_file():
            p.error(s.name, "host.tls.ca", f"CA bundle {str(path)!r} is not a readable file")
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
            for key in attrs.values():  # still check them: a typo stays a typo
                s.get_int(key, 1)
            continue
        template = s.values.get(attrs["template"], "").strip()
        if not template and attrs["template"] in s.values:
            p.error(s.name, attrs["template"], "template name must not be empty")
        dv, dm, dd = WINDOWS_DEFAULTS if is_windows(os_key) else OTHER_DEFAULTS
        vcpus = s.get_int(attrs["vcpus"], dv) if "vcpus" in attrs else dv
        memory = s.get_int(attrs["memory"], dm) if "memory" in attrs else dm
        disk = s.get_int(attrs["disk"], dd) if "disk" in attrs else dd
        if template:
            os_specs[os_key] = OsSpec(os_key, template, vcpus, memory, disk)
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
        labels=_split_list(s.values.get("host.labels", "")),
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


def _seed_scheme(s: _Section, name: str, url: str) -> str:
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


def _template_networks(s: _Section) -> dict[str, str]:
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


def _parse_static_pool(s: _Section) -> StaticPoolConfig | None:
    """The four `static.*` keys go together: all of them or none."""
    given = [k for k in STATIC_POOL_KEYS if k in s.raw]
    if not given:
        return None
    for key in STATIC_POOL_KEYS:
        if key not in s.raw:
            s.p.error(s.name, None, f"missing key {key} (the static.* keys go together: "
                                    f"{', '.join(STATIC_POOL_KEYS)})")
    server, bucket, user, password = (s.get_str(k, "", required=True) or "" for k in STATIC_POOL_KEYS)
    return StaticPoolConfig(server, bucket, user, password)


def _parse_guest_logins(s: _Section) -> dict[str, GuestLogin | None]:
    """`vm.<linux|windows>.username/password` in [common], each pair complete or absent."""
    out: dict[str, GuestLogin | None] = {}
    for family, (user_key, password_key) in GUEST_LOGIN_KEYS.items():
        out[family] = None
        if user_key not in s.raw and password_key not in s.raw:
            continue
        user = s.get_str(user_key, required=True)
        password = s.values.get(password_key)
        if password_key not in s.raw:
            s.p.error(s.name, None, f"missing key {password_key} (it goes with {user_key})")
        if user and password is not None:
            out[family] = GuestLogin(user, password)
    return out


def _parse_couchbase(s: _Section) -> CouchbaseConfig:
    s.only(COUCHBASE_KEYS + STATIC_POOL_KEYS)
    return CouchbaseConfig(
        server=s.get_str("couchbase.server", "", required=True) or "",
        bucket=s.get_str("couchbase.bucket", "", required=True) or "",
        username=s.get_str("couchbase.username", "", required=True) or "",
        password=s.get_str("couchbase.userpassword", "", required=True) or "",
        scope=s.get_str("couchbase.scope", "_default") or "_default",
        collection=s.get_str("couchbase.collection", "_default") or "_default",
    )


def _read_ini(text: str, p: _Problems) -> configparser.ConfigParser | None:
    lines = text.splitlines()
    parser = configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=(";", "#"),
        comment_prefixes=(";", "#"),
        empty_lines_in_values=False,
        strict=True,
        default_section="\x00no-defaults",  # a literal [DEFAULT] is just an unknown section
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    try:
        parser.read_string(text, source=p.source)
    except configparser.DuplicateSectionError as e:
        p.at_line(e.lineno or 0, f"[{e.section}] section appears twice")
    except configparser.DuplicateOptionError as e:
        p.at_line(e.lineno or 0, f"[{e.section}] {e.option}: key appears twice in the section")
    except configparser.MissingSectionHeaderError as e:
        p.at_line(e.lineno or 0, f"text before the first [section]: {_quoted_line(e.line)}")
    except configparser.ParsingError as e:
        for lineno, _ in e.errors:
            line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else "?"
            p.at_line(lineno, f"not a key=value line: {_quoted_line(line)}")
    except configparser.Error as e:
        p.error(None, None, f"does not parse: {_quoted_line(str(e))}")
    else:
        return parser
    return None


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Config:
    """Parse and validate INI text; raise ConfigError listing every problem found."""
    env = os.environ if env is None else env
    p = _Problems(source, _line_index(text))
    parser = _read_ini(text, p)
    if parser is None:
        raise ConfigError(p.errors, source)
    base = Path(source).resolve().parent if Path(source).is_file() else None

    sections = {name: _Section(name, parser[name], env, p) for name in parser.sections()}
    hosts, pool_sections = _parse_host_and_pool_sections(sections, base, p)
    _check_distinct_hosts(hosts, p)
    common_kwargs = _parse_common(sections["common"]) if "common" in sections else {}
    store = _parse_store(sections, p)
    pools = _parse_pools(pool_sections, sections, hosts, p)
    auth, quotas, default_quota = _parse_access(sections, p)
    if p.errors:
        raise ConfigError(p.errors, source)
    return Config(
        hosts=dict(sorted(hosts.items())),
        store=store,
        pools=pools,
        auth=auth,
        quotas=quotas,
        default_quota=default_quota,
        source=source,
        warnings=tuple(p.warnings),
        **common_kwargs,
    )


def _parse_host_and_pool_sections(sections: dict[str, _Section], base: Path | None,
                                  p: _Problems) -> tuple[dict[int, HostConfig],
                                                         dict[str, _Section]]:
    """[xenhostN] parsed, [pool <os>] set aside, and any other unknown section reported."""
    hosts: dict[int, HostConfig] = {}
    pool_sections: dict[str, _Section] = {}
    known = ["common", "couchbase", "store", "xenhost1", "pool <os>", "auth", "quota <owner>"]
    for name, s in sections.items():
        m_host = _HOST_SECTION.fullmatch(name)
        m_pool = _POOL_SECTION.fullmatch(name)
        if _QUOTA_SECTION.fullmatch(name) or name == "auth":
            continue  # _parse_access
        if m_host:
            digits = m_host.group(1)
            if digits.startswith("0"):
                fix = f"write [xenhost{int(digits)}]" if int(digits) else "numbers start at 1"
                p.error(name, None, f"bad section name: host number {digits!r} ({fix})")
                continue
            host = _parse_host(int(digits), s, base)
            if host is not None:
                hosts[host.ref] = host
        elif m_pool:
            pool_sections[m_pool.group(1)] = s
        elif name not in ("common", "couchbase", "store"):
            hint = _suggest(name, known)
            if name.lower().startswith("xenhost"):
                hint = " (hosts are [xenhostN] with N a number from 1, e.g. [xenhost1])"
            elif name.lower().startswith("pool"):
                hint = " (warm pools are [pool <os>], e.g. [pool centos])"
            p.error(name, None, "bad section name" + hint)

    if not any(_HOST_SECTION.fullmatch(n) for n in sections):
        p.error(None, None, "no [xenhostN] section: at least one host is needed")
    return hosts, pool_sections


def _check_distinct_hosts(hosts: dict[int, HostConfig], p: _Problems) -> None:
    """Two sections for one XAPI URL would count its room twice."""
    seen_urls: dict[str, int] = {}
    for ref in sorted(hosts):
        key = hosts[ref].url.lower()
        if key in seen_urls:
            p.error(f"xenhost{ref}", "host.name",
                    f"same host as [xenhost{seen_urls[key]}] ({hosts[ref].name!r})")
        else:
            seen_urls[key] = ref


def _parse_common(s: _Section) -> dict[str, Any]:
    """[common]: Config's keyword arguments for the keys it sets."""
    s.only([*COMMON_KEYS, *COMMON_BOOL_KEYS, *COMMON_FLOAT_KEYS,
            *(k for pair in GUEST_LOGIN_KEYS.values() for k in pair)])
    common_kwargs: dict[str, Any] = {}
    logins = _parse_guest_logins(s)
    common_kwargs["linux_login"] = logins["linux"]
    common_kwargs["windows_login"] = logins["windows"]
    defaults = Config(hosts={})
    for key, attr in COMMON_KEYS.items():
        maximum = 65535 if key == "vm.ssh.port" else None
        common_kwargs[attr] = s.get_int(key, getattr(defaults, attr), maximum=maximum)
    for key, attr in COMMON_BOOL_KEYS.items():
        common_kwargs[attr] = s.get_bool(key, getattr(defaults, attr))
    for key, attr in COMMON_FLOAT_KEYS.items():
        common_kwargs[attr] = s.get_float(key, getattr(defaults, attr))
    return common_kwargs


def _parse_store(sections: dict[str, _Section], p: _Problems) -> StoreConfig:
    """[store] with the [couchbase] section it may need."""
    couchbase = _parse_couchbase(sections["couchbase"]) if "couchbase" in sections else None
    static_pool = _parse_static_pool(sections["couchbase"]) if "couchbase" in sections else None
    store = StoreConfig(couchbase=couchbase, static_pool=static_pool)
    if "store" in sections:
        s = sections["store"]
        s.only(STORE_KEYS)
        backend = s.get_str("backend", "sqlite") or "sqlite"
        if backend not in STORE_BACKENDS:
            p.error("store", "backend", f"must be sqlite or couchbase, got {backend!r}")
        elif backend == "couchbase" and couchbase is None:
            p.error("store", "backend", "backend=couchbase needs a [couchbase] section")
        store = StoreConfig(
            backend=backend,
            sqlite_path=s.get_str("sqlite.path", StoreConfig.sqlite_path) or StoreConfig.sqlite_path,
            outbox_path=s.get_str("outbox.path", StoreConfig.outbox_path) or StoreConfig.outbox_path,
            couchbase=couchbase,
            static_pool=static_pool,
        )
    if couchbase is not None and store.backend != "couchbase":
        p.warn("couchbase", None, "present but not used: state stays in SQLite at "
               f"{store.sqlite_path}; set backend=couchbase in [store] to keep it in Couchbase "
               "(needed for several instances on several machines)")
    return store


def _parse_pools(pool_sections: dict[str, _Section], sections: dict[str, _Section],
                 hosts: dict[int, HostConfig], p: _Problems) -> dict[str, PoolConfig]:
    """[pool <os>]: each must name an OS some host serves, with labels some such host has."""
    pools: dict[str, PoolConfig] = {}
    served = {k: [h for h in hosts.values() if k in h.os] for h in hosts.values() for k in h.os}
    # OSes named by a host section that failed validation: its own errors say why,
    # so do not also blame the pool for it.
    served_by_broken = {
        key[: -len(".template")]
        for name, s in sections.items()
        if _HOST_SECTION.fullmatch(name)
        for key in s.raw
        if key.endswith(".template")
    }
    all_hosts_ok = len(hosts) == sum(1 for n in sections if _HOST_SECTION.fullmatch(n))
    for os_key, s in pool_sections.items():
        s.only(POOL_KEYS)
        if "ready" not in s.raw:
            p.error(s.name, None, "missing required key ready")
        pool = PoolConfig(
            os=os_key,
            ready=s.get_int("ready", 0, minimum=0),
            labels=_split_list(s.values.get("labels", "")),
            ttl_minutes=s.get_int("ready.ttl.minutes", 240),
        )
        if os_key not in served and os_key not in served_by_broken:
            offered = ", ".join(sorted(served)) or "none"
            p.error(s.name, None, f"no host serves {os_key} (no {os_key}.template in any [xenhostN]; served: {offered})"
                    + _suggest(os_key, sorted(served)))
        elif all_hosts_ok and pool.labels and not any(h.labels & pool.labels for h in served.get(os_key, [])):
            p.error(s.name, "labels",
                    f"no host serving {os_key} has any of the labels {', '.join(sorted(pool.labels))}")
        pools[os_key] = pool
    return pools


def _parse_access(sections: dict[str, _Section], p: _Problems
                  ) -> tuple[AuthConfig, dict[str, QuotaLimits], QuotaLimits]:
    """[auth] and the [quota <owner>] / [quota] sections."""
    auth = AuthConfig()
    if "auth" in sections:
        s = sections["auth"]
        s.only(AUTH_KEYS)
        legacy = (s.get_str("legacy", "open") or "open").lower()
        if legacy not in AUTH_LEGACY:
            p.error("auth", "legacy", f"must be one of {', '.join(AUTH_LEGACY)}, got {legacy!r}")
            legacy = "open"
        auth = AuthConfig(legacy=legacy, fail_limit=s.get_int("fail.limit", auth.fail_limit),
                          fail_window_secs=s.get_int("fail.window.secs", auth.fail_window_secs))
    quotas: dict[str, QuotaLimits] = {}
    default = QuotaLimits()
    for name, s in sections.items():
        m = _QUOTA_SECTION.fullmatch(name)
        if not m:
            continue
        s.only(QUOTA_KEYS)
        limits = QuotaLimits(**{k: (s.get_int(k, 0, minimum=0) if k in s.raw else None)
                                for k in QUOTA_KEYS})
        if m.group(1) is None:
            default = limits
        else:
            quotas[m.group(1)] = limits
    return auth, quotas, default


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate one INI file; ConfigError if unreadable or invalid."""
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror or e}"], source) from None
    return _parse_bytes(data, source, env)


def _parse_bytes(data: bytes, source: str, env: Mapping[str, str] | None) -> Config:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not UTF-8 text (byte {e.start})"], source) from None
    return parse_config(text, source, env)
