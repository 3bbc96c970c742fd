"""Async calls: a `task` row that goes pending -> success / failure / cancelled.

The operation runs in its own thread; it polls for cancellation whenever it
waits (`CallContext.sleep`), so `task.cancel` stops clones and boots early.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .datamodel import EPOCH
from .db import now_stamp
from .wire import XapiError, task_result

if TYPE_CHECKING:
    from .context import CallContext
    from .farm import SimPool

MAX_FINISHED = 200


class Tasks:
    def __init__(self, pool: SimPool) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self.cancel_events: dict[str, threading.Event] = {}
        self._finished: list[str] = []

    def create(self, name: str, host_ref: str) -> str:
        db = self.pool.db
        ref = db.create("task", {
            "name_label": name,
            "name_description": "",
            "created": now_stamp(),
            "finished": EPOCH,
            "status": "pending",
            "resident_on": host_ref,
            "progress": 0.0,
            "type": "<none/>",
            "result": "",
            "error_info": [],
            "allowed_operations": ["cancel"],
            "current_operations": {},
        })
        with self._lock:
            self.cancel_events[ref] = threading.Event()
        return ref

    def run(self, ctx: CallContext, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Run `fn(ctx, *args)` in a thread and record the outcome on ctx.task."""

        def body() -> None:
            task = ctx.task
            assert task is not None
            try:
                value = fn(ctx, *args)
            except XapiError as exc:
                if exc.code == "TASK_CANCELLED":
                    self.finish(task, "cancelled", error=exc.description)
                else:
                    self.finish(task, "failure", error=exc.description)
            except Exception as exc:  # any bug becomes INTERNAL_ERROR like xapi
                traceback.print_exc()
                self.finish(task, "failure", error=["INTERNAL_ERROR", str(exc)])
            else:
                self.finish(task, "success", result=task_result(value))

        threading.Thread(target=body, name=f"task {ctx.method}", daemon=True).start()

    def finish(self, ref: str, status: str, result: str = "", error: list[str] | None = None) -> None:
        db = self.pool.db
        with db.lock:
            rec = db.find("task", ref)
            if rec is None:
                return
            if rec["other_config"].get("destroy_when_finished") == "true":
                db.destroy("task", ref)
                with self._lock:
                    self.cancel_events.pop(ref, None)
                return
            db.modify("task", ref, {
                "status": status,
                "progress": 1.0,
                "finished": now_stamp(),
                "result": result,
                "error_info": list(error or []),
                "allowed_operations": ["destroy"],
                "current_operations": {},
            })
        with self._lock:
            self.cancel_events.pop(ref, None)
            self._finished.append(ref)
            old = self._finished[:-MAX_FINISHED] if len(self._finished) > MAX_FINISHED else []
            self._finished = self._finished[len(old):]
        for r in old:
            with db.lock:
                if db.find("task", r) is not None:
                    db.destroy("task", r)

    def cancel(self, ref: str) -> None:
        db = self.pool.db
        with db.lock:
            rec = db.get("task", ref)
            if rec["status"] != "pending":
                raise XapiError("OPERATION_NOT_ALLOWED", "task is not pending")
            ops = dict(rec["current_operations"])
            ops[ref] = "cancel"
            db.modify("task", ref, {"current_operations": ops})
        with self._lock:
            ev = self.cancel_events.get(ref)
        if ev is not None:
            ev.set()

    def destroy(self, ref: str) -> None:
        db = self.pool.db
        with db.lock:
            rec = db.get("task", ref)
            if rec["status"] == "pending":
                oc = dict(rec["other_config"])
                oc["destroy_when_finished"] = "true"
                db.modify("task", ref, {"other_config": oc})
                return
            db.destroy("task", ref)
        with self._lock:
            if ref in self._finished:
                self._finished.remove(ref)

    def progress(self, ref: str, value: float) -> None:
        db = self.pool.db
        with db.lock:
            if db.find("task", ref) is not None:
                db.modify("task", ref, {"progress": float(value)})
