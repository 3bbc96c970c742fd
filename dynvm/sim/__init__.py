"""dynvm's XenServer pool simulator: a XAPI peer over real HTTP XML-RPC."""

from .farm import Farm, SimHost, SimPool
from .timing import Timing

__all__ = ["Farm", "SimHost", "SimPool", "Timing"]
