"""The service layer: every use case of dynvm, a public method of a subject service.

Every entry point (the HTTP API, the CLI, the gunicorn hooks) holds one
`Dynvm` and calls `svc.<subject>.<use case>(...)`; none reaches into the
context, the store or a pool. The HTTP layer imports from the core only this
package, the records and the errors (`tests/core/test_layers.py`), so what
the use cases take and give back is exported here.

A new subject is a new module here: a `Subject` subclass whose methods are
the use cases (each calls `self.rt.touch()` when it serves a request, reads
the store through `self.rt.read` when an unreadable store must be a 503),
and one line in `Dynvm.__init__`.
"""

from dynvm.core.answers import Available, ServerResult, ServersRequest, ServersResult, ShowAll
from dynvm.core.asyncreq import NewRequest
from dynvm.core.callers import EVERYONE, Caller, doc_owner
from dynvm.core.durations import span
from dynvm.core.lifecycle import (
    CoreEvent,
    HistoryState,
    LeaseState,
    MemberShown,
    PoolShown,
    RequestState,
    RunState,
    Step,
    VmShown,
)
from dynvm.core.ports import VmSnapshot
from dynvm.core.progress import VmProgress
from dynvm.core.release import Target
from dynvm.core.services.dashboard import RECENT_HOURS, RequestFigures, Snapshot
from dynvm.core.services.facade import Dynvm
from dynvm.core.services.farm import Offer
from dynvm.core.services.fleet import Applied, FleetPlan
from dynvm.core.services.health import StoreGauges
from dynvm.core.services.maintenance import Options, Plan, RollingReboot, describe_plan
from dynvm.core.services.quotas import QuotaReport, Usage
from dynvm.core.services.requests import QueueStatus, RequestStatus
from dynvm.core.services.tokens import TokenAdmin
from dynvm.core.services.vms import Reverted, SshLogin
from dynvm.core.sshkeys import key_id
from dynvm.core.store import OwnerKey
from dynvm.core.trace import ACCESS_ATOM, bind_request, unbind_request

__all__ = [
    "ACCESS_ATOM", "Applied", "Available", "bind_request", "Caller", "CoreEvent", "describe_plan", "Dynvm",
    "EVERYONE", "FleetPlan", "HistoryState", "key_id", "LeaseState", "MemberShown",
    "NewRequest", "Offer", "Options", "OwnerKey", "Plan", "PoolShown", "QueueStatus", "QuotaReport",
    "RECENT_HOURS", "RequestFigures", "RequestState", "RequestStatus", "RollingReboot",
    "RunState", "ServerResult", "ServersRequest", "ServersResult", "ShowAll", "Snapshot",
    "SshLogin", "Step", "StoreGauges", "Target", "TokenAdmin", "unbind_request", "Usage",
    "VmProgress", "VmShown", "VmSnapshot", "Reverted", "doc_owner", "span",
]
