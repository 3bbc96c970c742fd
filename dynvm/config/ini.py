"""The seed's INI format read into a Config, validated with every problem listed at once.

An operator fixing a farm file at night should not have to play whack-a-mole,
so `parse_config` reports all problems of a file together, each naming file,
line, section and key. Reading the text is `sections`, a host section is
`hosts`, [auth], [quota] and [queue] are `sharing`; this module holds the key
tables and the other sections.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynvm.config.hosts import parse_host
from dynvm.config.model import (
    SNAPSHOTS_MAX,
    Config,
    CouchbaseConfig,
    GuestLogin,
    HostConfig,
    PoolConfig,
    QueueConfig,
    StaticPoolConfig,
    StoreConfig,
)
from dynvm.config.sections import (
    Problems,
    Section,
    line_index,
    read_ini,
    split_list,
    suggest,
)
from dynvm.config.sharing import QUOTA_SECTION, parse_access, parse_queue


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
    "vm.snapshots.max": "snapshots_max",
}
# (minimum, maximum) of the [common] whole numbers that are not simply positive
# (vm.snapshots.max=0 turns snapshots off).
INT_BOUNDS: dict[str, tuple[int, int | None]] = {"vm.ssh.port": (1, 65535),
                                                 "vm.snapshots.max": (0, SNAPSHOTS_MAX)}
COMMON_BOOL_KEYS: dict[str, str] = {"inventory.cache": "inventory_cache",
                                    "vm.password.login": "password_login"}
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
STORE_KEYS = ("backend", "sqlite.path", "outbox.path")
STORE_BACKENDS = ("sqlite", "couchbase")
POOL_KEYS = ("ready", "labels", "ready.ttl.minutes", "min", "max")

_HOST_SECTION = re.compile(r"xenhost([0-9]+)")  # ASCII digits: `\d` takes 'xenhost١'
_POOL_SECTION = re.compile(r"pool\s+(\S+)")
FLEET_KEYS = ("path",)


# ------------------------------------------------------------------------ parsing


def _parse_static_pool(s: Section) -> StaticPoolConfig | None:
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


def _parse_guest_logins(s: Section) -> dict[str, GuestLogin | None]:
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


def _parse_couchbase(s: Section) -> CouchbaseConfig:
    s.only(COUCHBASE_KEYS + STATIC_POOL_KEYS)
    return CouchbaseConfig(
        server=s.get_str("couchbase.server", "", required=True) or "",
        bucket=s.get_str("couchbase.bucket", "", required=True) or "",
        username=s.get_str("couchbase.username", "", required=True) or "",
        password=s.get_str("couchbase.userpassword", "", required=True) or "",
        scope=s.get_str("couchbase.scope", "_default") or "_default",
        collection=s.get_str("couchbase.collection", "_default") or "_default",
    )


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None,
    *, whole_file: bool = False,
) -> Config:
    """Parse and validate INI text; raise ConfigError listing every problem found.

    `whole_file`: the text is a file's content, which must end with a newline.
    """
    env = os.environ if env is None else env
    p = Problems(source, line_index(text))
    if whole_file:
        check_last_line(text, p)
    parser = read_ini(text, p)
    if parser is None:
        raise ConfigError(p.errors, source)
    base = Path(source).resolve().parent if Path(source).is_file() else None

    sections = {name: Section(name, parser[name], env, p) for name in parser.sections()}
    hosts, pool_sections = _parse_host_and_pool_sections(sections, base, p)
    _check_distinct_hosts(hosts, p)
    common_kwargs = _parse_common(sections["common"]) if "common" in sections else {}
    store = _parse_store(sections, p)
    pools = _parse_pools(pool_sections, sections, hosts, p)
    auth, quotas, default_quota = parse_access(sections, p)
    fleet_path = _parse_fleet(sections["fleet"], base) if "fleet" in sections else None
    queue = parse_queue(sections["queue"]) if "queue" in sections else QueueConfig()
    if p.errors:
        raise ConfigError(p.errors, source)
    return Config(
        lines=p.lines,
        hosts=dict(sorted(hosts.items())),
        store=store,
        pools=pools,
        auth=auth,
        quotas=quotas,
        default_quota=default_quota,
        fleet_path=fleet_path,
        queue=queue,
        source=source,
        warnings=tuple(p.warnings),
        **common_kwargs,
    )


def _parse_host_and_pool_sections(sections: dict[str, Section], base: Path | None,
                                  p: Problems) -> tuple[dict[int, HostConfig],
                                                         dict[str, Section]]:
    """[xenhostN] parsed, [pool <os>] set aside, and any other unknown section reported."""
    hosts: dict[int, HostConfig] = {}
    pool_sections: dict[str, Section] = {}
    known = ["common", "couchbase", "store", "xenhost1", "pool <os>", "auth", "quota <owner>",
             "fleet", "queue"]
    for name, s in sections.items():
        m_host = _HOST_SECTION.fullmatch(name)
        m_pool = _POOL_SECTION.fullmatch(name)
        if QUOTA_SECTION.fullmatch(name) or name == "auth":
            continue  # parse_access
        if m_host:
            digits = m_host.group(1)
            if digits.startswith("0"):
                fix = f"write [xenhost{int(digits)}]" if int(digits) else "numbers start at 1"
                p.error(name, None, f"bad section name: host number {digits!r} ({fix})")
                continue
            host = parse_host(int(digits), s, base)
            if host is not None:
                hosts[host.ref] = host
        elif m_pool:
            pool_sections[m_pool.group(1)] = s
        elif name not in ("common", "couchbase", "store", "fleet", "queue"):
            hint = suggest(name, known)
            if name.lower().startswith("xenhost"):
                hint = " (hosts are [xenhostN] with N a number from 1, e.g. [xenhost1])"
            elif name.lower().startswith("pool"):
                hint = " (warm pools are [pool <os>], e.g. [pool centos])"
            p.error(name, None, "bad section name" + hint)

    if not any(_HOST_SECTION.fullmatch(n) for n in sections):
        p.error(None, None, "no [xenhostN] section: at least one host is needed")
    return hosts, pool_sections


def _check_distinct_hosts(hosts: dict[int, HostConfig], p: Problems) -> None:
    """Two sections for one XAPI URL would count its room twice."""
    seen_urls: dict[str, int] = {}
    for ref in sorted(hosts):
        key = hosts[ref].url.lower()
        if key in seen_urls:
            p.error(f"xenhost{ref}", "host.name",
                    f"same host as [xenhost{seen_urls[key]}]")
        else:
            seen_urls[key] = ref


def _parse_common(s: Section) -> dict[str, Any]:
    """[common]: Config's keyword arguments for the keys it sets."""
    s.only([*COMMON_KEYS, *COMMON_BOOL_KEYS, *COMMON_FLOAT_KEYS,
            *(k for pair in GUEST_LOGIN_KEYS.values() for k in pair)])
    common_kwargs: dict[str, Any] = {}
    logins = _parse_guest_logins(s)
    common_kwargs["linux_login"] = logins["linux"]
    common_kwargs["windows_login"] = logins["windows"]
    defaults = Config(hosts={})
    for key, attr in COMMON_KEYS.items():
        minimum, maximum = INT_BOUNDS.get(key, (1, None))
        common_kwargs[attr] = s.get_int(key, getattr(defaults, attr), minimum, maximum)
    for key, attr in COMMON_BOOL_KEYS.items():
        common_kwargs[attr] = s.get_bool(key, getattr(defaults, attr))
    for key, attr in COMMON_FLOAT_KEYS.items():
        common_kwargs[attr] = s.get_float(key, getattr(defaults, attr))
    return common_kwargs


def _parse_store(sections: dict[str, Section], p: Problems) -> StoreConfig:
    """[store] with the [couchbase] section it may need."""
    couchbase = _parse_couchbase(sections["couchbase"]) if "couchbase" in sections else None
    static_pool = _parse_static_pool(sections["couchbase"]) if "couchbase" in sections else None
    store = StoreConfig(couchbase=couchbase, static_pool=static_pool)
    if "store" in sections:
        s = sections["store"]
        s.only(STORE_KEYS)
        backend = s.get_str("backend", "sqlite") or "sqlite"
        if backend not in STORE_BACKENDS:
            p.error("store", "backend", "must be sqlite or couchbase")
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


def _parse_pools(pool_sections: dict[str, Section], sections: dict[str, Section],
                 hosts: dict[int, HostConfig], p: Problems) -> dict[str, PoolConfig]:
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
        auto = (s.values.get("ready") or "").strip().lower() == "auto"
        low = s.get_int("min", 0, minimum=0)
        high = s.get_int("max", max(low, 10), minimum=0)
        if not auto and ("min" in s.raw or "max" in s.raw):
            p.error(s.name, "min" if "min" in s.raw else "max", "only with ready=auto")
        if high < low:
            p.error(s.name, "max", f"must be at least min ({low})")
        pool = PoolConfig(
            os=os_key,
            ready=low if auto else s.get_int("ready", 0, minimum=0),
            labels=split_list(s.values.get("labels", "")),
            ttl_minutes=s.get_int("ready.ttl.minutes", 240),
            auto=auto, min_ready=low, max_ready=max(high, low),
        )
        if os_key not in served and os_key not in served_by_broken:
            offered = ", ".join(sorted(served)) or "none"
            p.error(s.name, None, f"no host serves {os_key} (no {os_key}.template in any [xenhostN]; served: {offered})"
                    + suggest(os_key, sorted(served)))
        elif all_hosts_ok and pool.labels and not any(h.labels & pool.labels for h in served.get(os_key, [])):
            p.error(s.name, "labels",
                    f"no host serving {os_key} has any of these labels")
        pools[os_key] = pool
    return pools


def _parse_fleet(s: Section, base: Path | None) -> str | None:
    """[fleet] path: the fleet directory, a relative path taken from the INI file's directory.

    Its files are read and checked where they are used (`dynvm.config.fleet`), so
    an edit to them never needs the INI file reloaded.
    """
    s.only(FLEET_KEYS)
    value = s.get_str("path", required=True)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return os.path.abspath(path)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate one INI file; ConfigError if unreadable or invalid."""
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror or e}"], source) from None
    return parse_bytes(data, source, env)


def parse_bytes(data: bytes, source: str, env: Mapping[str, str] | None) -> Config:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not UTF-8 text (byte {e.start})"], source) from None
    return parse_config(text, source, env, whole_file=True)


def check_last_line(text: str, p: Problems) -> None:
    """A file whose last line has no newline was cut short (`host.vms.max.centos=12` cut
    to `=1` still validates) or is still being written: refused, naming that line."""
    if not text or text.endswith(("\n", "\r")):
        return
    last = len(text.splitlines())
    what = ("the last line has no newline: the file looks cut short or still being "
            "written (a whole file ends with a newline)")
    place = next((where for where, line in p.lines.items() if line == last and where[1]), None)
    if place is None:
        p.at_line(last, what)
    else:
        p.error(place[0], place[1], what)
