"""SR space accounting: the one place that moves an SR's physical_utilisation
and virtual_allocation, so that clones, provisioning, VDI create, resize and
destroy and the HA statefile all keep the totals the same way, and a
generated farm starts from the same totals. Callers hold the database lock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .db import Database
from .wire import XapiError


def charge(db: Database, sr: str, physical: int, virtual: int) -> None:
    """Count `physical` bytes used and `virtual` bytes allocated on `sr`
    (negative amounts give space back)."""
    rec = db.get("SR", sr)
    db.modify("SR", sr, {
        "physical_utilisation": int(rec.get("physical_utilisation", 0)) + physical,
        "virtual_allocation": int(rec.get("virtual_allocation", 0)) + virtual,
    })


def release(db: Database, sr: str, physical: int, virtual: int) -> None:
    """Give back what `charge` counted."""
    charge(db, sr, -physical, -virtual)


def assert_room(db: Database, sr: str, physical: int) -> None:
    """The storage manager's SRNoSpace (SR_BACKEND_FAILURE_44) when `physical`
    more bytes do not fit; an SR of unknown size (negative) takes anything."""
    rec = db.get("SR", sr)
    size = int(rec.get("physical_size", -1))
    if size >= 0 and int(rec.get("physical_utilisation", 0)) + physical > size:
        raise XapiError("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")


def totals(vdis: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """An SR's totals recounted from its disks (a freshly generated pool)."""
    disks = list(vdis)
    return {"physical_utilisation": sum(int(v.get("physical_utilisation", 0)) for v in disks),
            "virtual_allocation": sum(int(v.get("virtual_size", 0)) for v in disks)}
