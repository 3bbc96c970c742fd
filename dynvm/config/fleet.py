"""The fleet directory: long-lived VMs declared in files, one folder per host.

    <[fleet] path>/
      xenhost1/db1.ini      pinned to the pool of [xenhost1] (a member with host=)
      xenhost2/agent1.ini
      any/cache.ini         dynvm places it

Each `<name>.ini` holds one `[vm]` section. The directory is meant to live in
Git, so it is read where it is used (plan, apply, the background leader,
maintenance, the dashboard) and never needs the INI file reloaded; `dynvm
check-config` checks it with the INI file. As for the INI file, every problem
is reported at once, each with its file and line, and a file that fails is
never half read: a fleet with any error is refused as a whole, so a typo can
never make dynvm think a VM was removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dynvm.config.ini import ConfigError, check_last_line
from dynvm.config.model import Config, Fleet, FleetVm
from dynvm.config.sections import Problems, Section, line_index, read_ini, split_list

ANY = "any"
VM_SECTION = "vm"
FLEET_VM_KEYS = ("os", "vcpus", "memory", "disk", "labels", "owner", "pools", "autostart",
                 "group", "host", "recreate")
_HOST_FOLDER = re.compile(r"xenhost([1-9][0-9]*)")
# A VM name is a file name and a name_label: letters, digits, and . _ - after the first.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def load_fleet(cfg: Config) -> Fleet | None:
    """The fleet of `cfg`'s [fleet] path, validated against its hosts; None without [fleet].

    Raises ConfigError listing every problem of every file.
    """
    if cfg.fleet_path is None:
        return None
    return read_fleet(cfg.fleet_path, cfg)


def read_fleet(path: str, cfg: Config) -> Fleet:
    root = Path(path)
    problems: list[str] = []
    warnings: list[str] = []
    if not root.is_dir():
        raise ConfigError([f"{path}: the fleet directory ([fleet] path) is not a directory"],
                          path)
    vms: dict[str, FleetVm] = {}
    lines: dict[str, str] = {}  # VM name -> "file:line" of its [vm] section
    seen: dict[str, Path] = {}  # VM name -> its file
    for folder in sorted(root.iterdir()):
        if folder.name.startswith("."):
            continue  # .git and the like
        if not folder.is_dir():
            if folder.suffix == ".ini":
                problems.append(f"{folder}: a VM file belongs in a host folder (xenhostN/) "
                                f"or in {ANY}/")
            continue
        host_ref = _folder_host(folder, cfg, problems)
        if host_ref is False:
            continue
        for file in sorted(folder.iterdir()):
            if file.name.startswith("."):
                continue
            if file.is_dir() or file.suffix != ".ini":
                warnings.append(f"{file}: not a <name>.ini file: ignored")
                continue
            first = seen.setdefault(file.stem, file)
            if first is not file:  # said even when either file has problems of its own
                problems.append(f"{file}: {file.stem} is also declared in {first}: a VM is "
                                f"declared once, so that two hosts never start the same guest")
                continue
            found = _read_vm(file, host_ref, cfg, problems, warnings)
            if found is not None:
                vms[found[0].name], lines[found[0].name] = found
    problems += _group_problems(vms, lines)
    if problems:
        raise ConfigError(problems, path)
    return Fleet(path=path, vms=dict(sorted(vms.items())), warnings=tuple(warnings))


def _folder_host(folder: Path, cfg: Config, problems: list[str]) -> int | None | bool:
    """The [xenhostN] a folder stands for, None for any/, False when it is no fleet folder."""
    if folder.name == ANY:
        return None
    m = _HOST_FOLDER.fullmatch(folder.name)
    if m is None:
        problems.append(f"{folder}: unknown folder (a fleet folder is xenhostN for a "
                        f"configured [xenhostN], or {ANY})")
        return False
    ref = int(m.group(1))
    if ref not in cfg.hosts:
        known = ", ".join(f"xenhost{r}" for r in sorted(cfg.hosts)) or "none"
        problems.append(f"{folder}: no [xenhost{ref}] in the configuration (configured: {known})")
        return False
    return ref


def _read_vm(file: Path, host_ref: int | None, cfg: Config, problems: list[str],
             warnings: list[str]) -> tuple[FleetVm, str] | None:
    """One VM file and "file:line" of its [vm] section; its problems are added to
    `problems` (then None), its warnings to `warnings`."""
    source = str(file)
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        problems.append(f"{source}: cannot read: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        problems.append(f"{source}: not UTF-8 text (byte {exc.start})")
        return None
    p = Problems(source, line_index(text))
    check_last_line(text, p)
    name = file.stem
    if not _NAME.fullmatch(name):
        p.error(None, None, f"bad VM name {name[:70]!r}: the file name is the VM's name: letters, "
                     f"digits, '.', '_' and '-', at most 63")
    parser = read_ini(text, p)
    vm = None
    if parser is not None:
        for other in parser.sections():
            if other != VM_SECTION:
                p.error(other, None, "bad section name (a fleet file holds one [vm] section)")
        if VM_SECTION not in parser:
            p.error(None, None, "no [vm] section (a fleet file holds one [vm] section)")
        else:
            section = Section(VM_SECTION, parser[VM_SECTION], os.environ, p)
            vm = _parse_vm(name, host_ref, section, cfg)
    problems += p.errors
    warnings += p.warnings
    if vm is None or p.errors:
        return None
    return vm, f"{source}:{p.lines.get((VM_SECTION, None), 1)}"


def _parse_vm(name: str, host_ref: int | None, s: Section, cfg: Config) -> FleetVm | None:
    s.only(FLEET_VM_KEYS)
    os_key = s.get_str("os", required=True)
    spec = None
    if os_key:
        if host_ref is not None:
            host = cfg.hosts[host_ref]
            spec = host.os.get(os_key)
            if spec is None:
                s.p.error(s.name, "os", f"xenhost{host_ref} has no {os_key}.template (it serves "
                          f"{', '.join(sorted(host.os)) or 'no OS'})")
        else:
            spec = cfg.os_spec(os_key)
            if spec is None:
                s.p.error(s.name, "os", f"no host serves {os_key} (served: "
                          f"{', '.join(sorted(cfg.served_os)) or 'none'})")
    member = s.get_str("host")
    if member is not None and host_ref is None:
        s.p.error(s.name, "host", f"host= pins a VM to a member host of one pool: only in a "
                  f"xenhostN/ folder, not in {ANY}/")
    if "labels" in s.raw and host_ref is not None:
        s.p.warn(s.name, "labels", f"labels choose hosts for VMs in {ANY}/ only: ignored here")
    group = s.get_str("group")
    if group is not None and not _NAME.fullmatch(group):
        s.p.error(s.name, "group", "a group name is letters, digits, '.', '_' and '-'")
    # In the order written, as the seed writes them into the static-pool documents.
    pools = tuple(dict.fromkeys(p.strip() for p in s.values.get("pools", "").split(",")
                                if p.strip()))
    if pools and cfg.store.backend != "sqlite" and cfg.store.static_pool is None:
        s.p.error(s.name, "pools", "pools= needs the static.* keys in [couchbase] (a Couchbase "
                  "deployment has nowhere else to put static-pool documents)")
    vm = FleetVm(  # every key is read (and checked) before the OS decides
        name=name, host_ref=host_ref, os=os_key or "",
        vcpus=s.get_int("vcpus", spec.vcpus if spec else 1),
        memory_gib=s.get_int("memory", spec.memory_gib if spec else 1),
        disk_gib=s.get_int("disk", spec.disk_gib if spec else 1),
        member=member, labels=split_list(s.values.get("labels", "")),
        owner=s.get_str("owner", "") or "", pools=pools,
        autostart=s.get_bool("autostart", True), group=group,
        recreate=s.get_bool("recreate", False), source=s.p.source)
    return vm if spec is not None else None


def _group_problems(vms: dict[str, FleetVm], lines: dict[str, str]) -> list[str]:
    """Two VMs of one group pinned to the same member host can never run apart."""
    out = []
    pinned: dict[tuple[str, int | None, str], FleetVm] = {}
    for vm in sorted(vms.values(), key=lambda v: v.source):
        if not vm.group or vm.member is None:
            continue
        key = (vm.group, vm.host_ref, vm.member)
        first = pinned.setdefault(key, vm)
        if first is not vm:
            out.append(f"{lines[vm.name]}: group {vm.group}: {vm.name} and {first.name} are both "
                       f"pinned to {vm.declared}, and VMs of one group never share a member host")
    return out
