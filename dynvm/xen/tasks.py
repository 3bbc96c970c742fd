"""Running XAPI's `Async.*` calls as tasks and waiting for their outcome."""

from __future__ import annotations

import threading
import time
from typing import Any

from dynvm.core.ports import WaitTimeout, XenError
from dynvm.xen import records as R
from dynvm.xen.inventory import finished
from dynvm.xen.metrics import count_error
from dynvm.xen.pool_access import PoolAccess

TASK_POLL = 5.0  # seconds between task.get_record checks, a net under the event feed


class Cancelled(XenError):
    def __init__(self, what: str) -> None:
        super().__init__("CANCELLED", [what], f"cancelled while {what}")


def check_cancel(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


class TaskRunner(PoolAccess):
    """Tasks of one pool; waiting rides on the inventory's event feed."""

    def run_task(self, method_path: str, *args: Any, timeout: float,
                 cancel: threading.Event | None = None) -> str:
        """Run an `Async.*` call and wait for it; returns the decoded result.

        Waiting rides on the event feed (task events wake us) with a slow
        poll of `task.get_record` as a safety net (the feed may be reconnecting,
        and a reload does not bring tasks back). When `cancel` is set we ask
        XAPI to cancel but still wait for the outcome, so that whatever the
        task created can be cleaned up by the caller.
        """
        return self.wait_task(self.call(method_path, *args), method_path, timeout=timeout,
                              cancel=cancel)

    def wait_task(self, task: str, what: str, *, timeout: float,
                  cancel: threading.Event | None = None) -> str:
        """Wait for `task` to finish (see run_task), destroy it; its decoded result."""
        inv = self.inventory
        deadline = time.monotonic() + timeout
        cancel_sent = False
        try:
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                rec = inv.wait_for(lambda: inv.finished_task(task),
                                   min(TASK_POLL, left), None if cancel_sent else cancel)
                if rec is not None:
                    break
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    cancel_sent = True
                    self._quietly("task.cancel", task)
                    continue
                rec = finished(self.call("task.get_record", task))
                if rec is not None:
                    break
                if time.monotonic() >= deadline:
                    self._quietly("task.cancel", task)
                    raise WaitTimeout(what, timeout)
        finally:
            self._quietly("task.destroy", task)
            inv.apply_record("task", task, None)
        status = rec.get("status")
        if status == "success":
            return R.task_result(rec.get("result", ""))
        info = [str(x) for x in (rec.get("error_info") or [])]
        if status == "cancelled" and not info:
            info = ["TASK_CANCELLED", task]
        err = XenError(info[0] if info else "TASK_FAILED", info[1:])
        # An async call's failure, as translate counts and logs the others.
        count_error(err.code, f"{what} on {self.sessions.url}", err.params)
        raise err
