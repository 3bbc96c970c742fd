"""The guest operating systems the simulated farm offers, one template each.

Keys and template names are those of dynvm's INI (`<os>.template=`), so a
generated farm can be pointed at straight away. What a booted guest reports
(its `os_version` map) comes from here too, so tests see realistic values.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class OsTemplate:
    key: str  # INI key, e.g. "centos7"
    template_name: str  # name_label of the template VM
    windows: bool
    distro: str  # os_version "distro" as the guest agent reports it
    os_name: str  # os_version "name"
    major: str
    minor: str
    uname: str  # kernel release ("" on Windows, whose agent reports none)
    vcpus: int
    memory_gib: int
    disk_gib: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_gib * GIB

    @property
    def disk_bytes(self) -> int:
        return self.disk_gib * GIB

    def os_version(self) -> dict[str, str]:
        """The guest metrics `os_version` map a running guest of this OS reports."""
        osv = {"name": self.os_name, "distro": self.distro, "major": self.major, "minor": self.minor}
        if self.windows:
            osv.update(spmajor="0", spminor="0")
        else:
            osv["uname"] = self.uname
        return osv


def _linux(key: str, template: str, distro: str, name: str, major: str, minor: str, uname: str) -> OsTemplate:
    return OsTemplate(key, template, False, distro, name, major, minor, uname, 8, 4, 35)


OS_CATALOG: dict[str, OsTemplate] = {
    t.key: t
    for t in (
        _linux("centos", "tmpl-cnt7.7", "centos", "CentOS Linux release 7.7.1908 (Core)", "7", "7",
               "3.10.0-1062.el7.x86_64"),
        _linux("centos7", "tmpl-cnt7.9", "centos", "CentOS Linux release 7.9.2009 (Core)", "7", "9",
               "3.10.0-1160.el7.x86_64"),
        _linux("centos8", "tmpl-cnt8.2", "centos", "CentOS Linux release 8.2.2004 (Core)", "8", "2",
               "4.18.0-193.el8.x86_64"),
        OsTemplate(
            "windows", "tmpl-win16dc - PATCHED (1)", True, "windows",
            "Microsoft Windows Server 2016 Datacenter|C:\\Windows|\\Device\\Harddisk0\\Partition2",
            "10", "0", "", 12, 6, 71,
        ),
        _linux("debian10", "tmpl-deb10.9", "debian", "Debian GNU/Linux 10 (buster)", "10", "9",
               "4.19.0-16-amd64"),
        _linux("ubuntu18", "tmpl-ubu18.04", "ubuntu", "Ubuntu 18.04.5 LTS", "18", "04",
               "4.15.0-142-generic"),
        _linux("oel8", "tmpl-oel8.3", "oracle", "Oracle Linux Server release 8.3", "8", "3",
               "5.4.17-2011.7.4.el8uek.x86_64"),
        _linux("suse15", "tmpl-sles15sp2", "sles", "SUSE Linux Enterprise Server 15 SP2", "15", "2",
               "5.3.18-22-default"),
    )
}

_BY_TEMPLATE = {t.template_name: t for t in OS_CATALOG.values()}


def by_template_name(name: str) -> OsTemplate | None:
    """The catalog entry whose template is called `name`, if any."""
    return _BY_TEMPLATE.get(name)
