"""Writing bytes into a VDI as XAPI's SDKs do: an HTTP `PUT /import_raw_vdi`
with the session, the disk and a task in the query, the raw bytes as body.

XAPI answers `200` with the task's id before it writes, so the outcome is the
task's (waited for on the event feed); a disk on a host-local SR of a pool
member is answered with a `302` to that member, followed with the same PUT.
"""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlencode, urlsplit

from dynvm.core.ports import HostUnreachable, XenError
from dynvm.xen.pool_access import PoolAccess
from dynvm.xen.tasks import TaskRunner
from dynvm.xen.transport import TimedHTTPConnection, TimedHTTPSConnection, ssl_context

PATH = "/import_raw_vdi"
MAX_REDIRECTS = 3


class RawImporter(PoolAccess):
    """Uploads of raw disk images into VDIs of one pool."""

    def __init__(self, tasks: TaskRunner) -> None:
        super().__init__(tasks.sessions, tasks.inventory)
        self.tasks = tasks

    def put(self, vdi: str, data: bytes, *, label: str, timeout: float,
            cancel: threading.Event | None = None) -> None:
        """Write `data` at the start of `vdi`; raises XenError with XAPI's reason."""
        task = self.call("task.create", label, "")
        try:
            with self.sessions.session() as session:  # held: the upload runs under it
                query = urlencode({"session_id": session.handle, "vdi": vdi,
                                   "task_id": task, "format": "raw"})
                status = self._send(f"{self.sessions.url}{PATH}?{query}", data)
        except BaseException:
            self._quietly("task.destroy", task)
            raise
        if status != 200:
            # XAPI fails the task when it can say why (a missing disk); a refused
            # session or a host that cannot serve the disk leaves it pending.
            rec = self.call("task.get_record", task)
            self._quietly("task.destroy", task)
            reason = [str(x) for x in rec.get("error_info") or []]
            raise XenError(reason[0] if reason else "IMPORT_RAW_VDI_REFUSED",
                           reason[1:] if reason else [str(status)],
                           f"{PATH} answered {status}")
        self.tasks.wait_task(task, PATH, timeout=timeout, cancel=cancel)

    def _send(self, url: str, data: bytes) -> int:
        """The PUT's final status, following XAPI's redirects to the host with the disk."""
        host = self.sessions.host
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                conn = TimedHTTPSConnection(parts.netloc, connect_timeout=host.connect_timeout,
                                            call_timeout=host.call_timeout,
                                            context=ssl_context(host))
            else:
                conn = TimedHTTPConnection(parts.netloc, connect_timeout=host.connect_timeout,
                                           call_timeout=host.call_timeout)
            try:
                conn.request("PUT", f"{parts.path}?{parts.query}", body=data,
                             headers={"Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise HostUnreachable(f"PUT {PATH} on {parts.netloc}: "
                                      f"{type(exc).__name__}: {exc}") from exc
            finally:
                conn.close()
            location = resp.getheader("Location")
            if resp.status not in (301, 302, 307) or not location:
                return resp.status
            moved = urlsplit(location)
            if moved.scheme != parts.scheme:  # never from https down to http
                return resp.status
            url = location
        return 302
