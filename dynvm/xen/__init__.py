"""XenAPI access for dynvm: sessions, the event-fed inventory, building and destroying VMs.

Nothing outside this package imports XenAPI; the core sees `dynvm.core.ports`.
"""

from dynvm.xen.pool import XenPoolClient, open_pool

__all__ = ["XenPoolClient", "open_pool"]
