"""What each subject of the pool client (tasks, building, waiting, removal) works with."""

from __future__ import annotations

import logging
from typing import Any

from dynvm.core.ports import XenError
from dynvm.xen.inventory import Inventory
from dynvm.xen.session import SessionPool

log = logging.getLogger(__name__)


class PoolAccess:
    """One pool's sessions and inventory; subclasses add one subject each."""

    def __init__(self, sessions: SessionPool, inventory: Inventory) -> None:
        self.sessions = sessions
        self.inventory = inventory
        self.host_ref = sessions.host.ref

    def call(self, method_path: str, *args: Any) -> Any:
        return self.sessions.call(method_path, *args)

    def _quietly(self, method_path: str, *args: Any) -> None:
        try:
            self.call(method_path, *args)
        except XenError as exc:
            log.debug("xenhost%d: %s failed: %s", self.host_ref, method_path, exc)
