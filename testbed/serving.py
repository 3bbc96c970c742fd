"""Running dynvm for real (gunicorn processes) and waiting on it, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import requests

from testbed.processes import GroupProcess

T = TypeVar("T")

# Whether the test running now may start `dynvm serve` (gunicorn): tests/conftest.py sets
# it from the test's `served` mark before each test. `make test-fast` leaves served tests
# out, so one that serves without the mark fails here instead of slowing it down
# unnoticed. None outside pytest (the benchmarks).
may_serve: bool | None = None


def serve_command(*args: str) -> list[str]:
    """`python -m dynvm serve ARGS`, for a test marked `served` (or a benchmark)."""
    if may_serve is False:
        raise AssertionError("this test starts `dynvm serve` (gunicorn): "
                             "mark it @pytest.mark.served")
    return [sys.executable, "-m", "dynvm", "serve", *args]


def children(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.add(int(entry.name))
    return out


def workers(pid: int) -> set[int]:
    """The gunicorn workers of a `dynvm serve` master: its children but the inventory
    process (and the embedded farm)."""
    from dynvm.runtime.serving import cmdline

    helpers = ("dynvm.runtime.inventory_process", "dynvm.sim.runner")
    return {child for child in children(pid)
            if (line := cmdline(child)) and not any(h in line for h in helpers)}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.02):
    """Poll a condition with a deadline; returns its first truthy value.

    For things that are asynchronous by design (a boot, a background loop),
    never to paper over a race.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def served(ini: Path, workers: int = 2, log: Path | None = None,
           threads: int | None = None,
           ready_secs: float = 300.0, env: dict[str, str] | None = None,
           umask: int = -1) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dynvm serve` as a real gunicorn process group; yields (base URL, process).

    The group dies with the test process even if that is killed (`GroupProcess`).

    Yields once /health answers: workers read every pool before they accept,
    which takes seconds on a big farm, so a slow answer means "not yet", and
    only `ready_secs` without any answer (or the process exiting) is a failure.
    `env` adds to the environment; `umask` (-1: inherited) is the process's umask.
    """
    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    cmd = serve_command("--config", str(ini), "--bind", f"127.0.0.1:{port}",
                        "--workers", str(workers))
    if threads:
        cmd += ["--threads", str(threads)]
    proc = GroupProcess(cmd, stdout=out, stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                        umask=umask)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            detail = log.read_text() if log else ""
            raise AssertionError(f"dynvm serve exited with {proc.returncode}: {detail}")
        try:
            return requests.get(base + "/health", timeout=30).status_code in (200, 503)
        except (requests.ConnectionError, requests.Timeout):  # a worker still warming up
            return False

    try:
        wait_until(up, timeout=ready_secs, what="dynvm serve to answer /health", interval=0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            stop_group(proc)
        if not isinstance(out, int):  # a log file, not DEVNULL
            out.close()


@contextlib.contextmanager
def side_by_side(*servers: contextlib.AbstractContextManager[T]) -> Iterator[list[T]]:
    """Enter several `served(...)` at once, each waiting for its own start on a thread of
    its own, and leave them all at once; yields what each yields, in order."""
    with ThreadPoolExecutor(len(servers)) as pool:
        started = [pool.submit(cm.__enter__) for cm in servers]
    entered: list[T] = []
    live: list[contextlib.AbstractContextManager[T]] = []
    failed: BaseException | None = None
    for cm, future in zip(servers, started, strict=True):
        try:
            entered.append(future.result())
            live.append(cm)
        except BaseException as exc:  # raised once the others are left again
            failed = failed or exc
    try:
        if failed is not None:
            raise failed
        yield entered
    finally:
        with ThreadPoolExecutor(max(len(live), 1)) as pool:
            for done in [pool.submit(cm.__exit__, None, None, None) for cm in live]:
                done.result()


def stop_group(proc: subprocess.Popen) -> None:
    """TERM the process group `proc` leads (a `GroupProcess`); KILL it after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
