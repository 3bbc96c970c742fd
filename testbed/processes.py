"""Process groups a test run starts die with it, however it ends (SIGKILL included).

`dynvm serve` runs in a session of its own, so a test can signal its whole
process group (master, workers, embedded farm); that also means nothing
stops it when the pytest process that started it is killed: it used to be
left behind, gunicorn and all. `PR_SET_PDEATHSIG` is no answer here: the
kernel sends it when the *thread* that forked the child ends, and a fixture
may start a server from a thread that exits long before the test does.

Instead one small watcher process per test process reads a pipe whose write
end only the test process holds (close-on-exec, never inherited by what it
starts). The kernel closes that end however the test process ends; the
watcher then reads EOF and kills every group still registered. A group is
registered when it starts and forgotten once its leader is reaped.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from typing import IO, Any

# Reads "+PGID" / "-PGID" lines; at EOF (its test process is gone) kills what is left.
_WATCHER = r"""
import os, signal, sys
groups = set()
for line in sys.stdin:
    (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_lock = threading.Lock()
_pipe: IO[str] | None = None
_owner = 0  # the process whose watcher `_pipe` reaches (a fork needs its own)


def _tell(line: str) -> None:
    global _pipe, _owner
    with _lock:
        if _pipe is None or _owner != os.getpid():
            watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHER], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                start_new_session=True)  # a signal to the test's own group spares it
            assert watcher.stdin is not None
            _pipe, _owner = watcher.stdin, os.getpid()
            atexit.register(_finish, watcher)
        _pipe.write(line + "\n")
        _pipe.flush()


def _finish(watcher: subprocess.Popen[str]) -> None:
    """At a normal exit: close the pipe (EOF) and reap the watcher."""
    if watcher.stdin is not None:
        watcher.stdin.close()
    watcher.wait()


class GroupProcess(subprocess.Popen[Any]):
    """A process leading a session of its own, killed with its group if the process
    that started it dies first."""

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, start_new_session=True, **kwargs)
        self._kept = True
        _tell(f"+{self.pid}")

    def _forget(self) -> None:
        if self.returncode is not None and self._kept:
            self._kept = False  # reaped: its pid (and group id) may be reused
            _tell(f"-{self.pid}")

    def poll(self) -> int | None:
        code = super().poll()
        self._forget()
        return code

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._forget()
        return code
