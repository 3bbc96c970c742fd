"""dynvm INI files for tests and benchmarks, built from sections and keys.

A test says which key of which section it wants (`ini.set("xenhost2",
{"host.drain": True})`) instead of searching and replacing INI text, so a
change in the simulator's sections or in key order cannot silently turn an
edit into a no-op.
"""

from __future__ import annotations

import configparser
import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Keys = Mapping[str, object]

_HOST = re.compile(r"xenhost([0-9]+)")


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Ini:
    """An ordered set of INI sections; every method that changes it returns it, for chaining."""

    def __init__(self, sections: Mapping[str, Keys] | None = None) -> None:
        self.sections: dict[str, dict[str, str]] = {}
        for name, keys in (sections or {}).items():
            self.set(name, keys)

    @classmethod
    def parse(cls, text: str) -> Ini:
        """Sections of existing INI text (the simulator's `[xenhostN]`, the seed's file)."""
        cp = configparser.ConfigParser(interpolation=None, strict=False,
                                       default_section="\0none")
        cp.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
        cp.read_string(text)
        return cls({name: dict(cp[name]) for name in cp.sections()})

    @classmethod
    def of_farm(cls, farm: Any, *, storage_name: str | None = None, first: int = 1) -> Ini:
        """One `[xenhostN]` per pool master of a simulated farm."""
        return cls.parse(farm.ini_sections(first=first, storage_name=storage_name))

    def copy(self) -> Ini:
        return Ini(copy.deepcopy(self.sections))

    def set(self, section: str, keys: Keys) -> Ini:
        """Set keys of a section, creating it (at the end) when it is new."""
        self.sections.setdefault(section, {}).update({k: _value(v) for k, v in keys.items()})
        return self

    def hosts(self) -> list[str]:
        """The `[xenhostN]` section names, in file order."""
        return [name for name in self.sections if _HOST.fullmatch(name)]

    def set_hosts(self, keys: Keys) -> Ini:
        """Set the same keys in every `[xenhostN]`."""
        for name in self.hosts():
            self.set(name, keys)
        return self

    def only(self, *sections: str) -> Ini:
        """Keep the named `[xenhostN]` sections and drop the other hosts."""
        for name in self.hosts():
            if name not in sections:
                del self.sections[name]
        return self

    def drop(self, *sections: str) -> Ini:
        for name in sections:
            del self.sections[name]
        return self

    def merge(self, other: Ini) -> Ini:
        for name, keys in other.sections.items():
            self.set(name, keys)
        return self

    def sqlite_store(self, directory: Path) -> Ini:
        """`[store]`: SQLite state and outbox under `directory` (a test's tmp_path)."""
        return self.set("store", {"backend": "sqlite", "sqlite.path": directory / "dynvm.sqlite",
                                  "outbox.path": directory / "outbox.sqlite"})

    def text(self) -> str:
        return "\n".join(f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in keys.items())
                         for name, keys in self.sections.items())

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text())
        return path


def farm_ini(farm: Any, directory: Path, *, network_timeout_secs: int = 60,
             storage_name: str | None = None) -> Ini:
    """The usual file for a service on a simulated farm: its hosts, a network wait and
    an SQLite store under `directory`."""
    return (Ini({"common": {"vm.network.timeout.secs": network_timeout_secs}})
            .sqlite_store(directory)
            .merge(Ini.of_farm(farm, storage_name=storage_name)))
