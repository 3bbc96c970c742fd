"""What VBDs and VIFs share: being in use, and their destruction with their
metrics record."""

from __future__ import annotations

from typing import Any

from .db import NULL, Database
from .wire import XapiError


def in_use(rec: dict[str, Any]) -> bool:
    return bool(rec.get("currently_attached") or rec.get("reserved"))


def destroy_device(db: Database, cls: str, ref: str) -> None:
    metrics = db.tables[cls][ref].get("metrics", NULL)
    if db.find(f"{cls}_metrics", metrics) is not None:
        db.destroy(f"{cls}_metrics", metrics)
    db.destroy(cls, ref)


def check_unplugged(db: Database, cls: str, ref: str) -> dict[str, Any]:
    rec = db.get(cls, ref)
    if in_use(rec):
        vm = db.find("VM", rec.get("VM", NULL))
        raise XapiError("OPERATION_NOT_ALLOWED", f"{cls} '{rec['uuid']}' still attached to "
                        f"'{vm['uuid'] if vm else rec.get('VM', NULL)}'")
    return rec
