"""dynvm's XenServer pool simulator: a XAPI peer over real HTTP XML-RPC."""

from __future__ import annotations

from typing import Any

__all__ = ["Farm", "SimHost", "SimPool", "Timing"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so tools that only need the type helpers (the
    # datamodel generator) do not load the generated datamodel they produce.
    if name in ("Farm", "SimHost", "SimPool"):
        from dynvm.sim import farm

        return getattr(farm, name)
    if name == "Timing":
        from dynvm.sim.timing import Timing

        return Timing
    raise AttributeError(name)
