"""Process supervision for `dynvm serve`: gunicorn hooks, the metrics directory, child death.

Why these exist:

- gunicorn forks workers from inside `Arbiter.run()`; a worker that exits
  unwinds the master's Python stack, so any `with` block or ExitStack of
  `dynvm serve` would run its cleanup in every exiting worker (a HUP used to
  delete the Prometheus directory that way). Cleanups go through `MasterOnly`.
- The Prometheus multiprocess directory is created and removed by the master
  alone; a worker that dies is only marked dead (`child_exit`).
- Children die with their parent through the kernel (`PR_SET_PDEATHSIG`), not
  through a pipe: a pipe's write end is inherited by every process forked
  later (the gunicorn workers), so the child would not see EOF while any of
  them lives, and a child busy or stuck in a C call never reads the pipe; the
  kernel signal needs neither a reader thread nor cooperation.
- A stop cancels builds in flight so they answer 503 and roll back before
  gunicorn's graceful timeout, instead of being SIGKILLed mid-reply; a
  worker's quick stop runs once even when Ctrl-C's SIGINT and the master's
  SIGQUIT both arrive (see `quit_once`).
- A worker ends right after its exit handlers (`end_without_teardown`): the
  interpreter's teardown of a fork's modules and objects copies the pages it
  shares with the master, and cost each stop or reload as much CPU as a
  worker's start.
- Workers take their views from the instance's inventory process
  (`dynvm.runtime.inventory_process`) and open their sessions before they
  accept a connection; on a reload the old ones serve meanwhile
  (`dynvm.runtime.reloads`).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("dynvm.serving")

GRACEFUL_TIMEOUT_SECS = 10
# On a graceful stop (TERM, HUP, max_requests) requests in flight may finish for this
# long; then their builds are cancelled so they answer 503 before the master's SIGKILL.
FINISH_BEFORE_CANCEL_SECS = 5.0
WARM_UP_SECS = 60.0
METRICS_PREFIX = "dynvm-metrics-"
PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------- dying with the parent


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent dies.

    `parent` is the pid the caller expects as parent: if it already died before
    the request took effect, exit now (the kernel would never signal).
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def child_preexec(parent: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: the child is killed when `parent` dies."""
    def preexec() -> None:
        die_with_parent(signal.SIGKILL, parent)
    return preexec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_pid(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """`sig` (TERM), then KILL after `timeout`; returns once the process is gone."""
    for send, wait in ((sig, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, send)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while pid_alive(pid) and not _reaped(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for another process to exit, nothing to subscribe to
        if not pid_alive(pid) or _reaped(pid):
            return


def _reaped(pid: int) -> bool:
    """True when `pid` is our zombie child (reaps it) or gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


class MasterOnly:
    """Wraps a cleanup so it runs only in the process that registered it.

    gunicorn workers are forks of the master that unwind the master's stack
    when they exit; without this guard they would run the master's cleanups.
    """

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.pid = os.getpid()
        self.func, self.args = func, args

    def __call__(self) -> None:
        if os.getpid() == self.pid:
            self.func(*self.args)


# ---------------------------------------------------------------- Prometheus directory


def make_metrics_dir() -> str:
    """A fresh 0700 directory for this master, after removing those of dead masters."""
    return make_master_dir(METRICS_PREFIX)


def make_master_dir(prefix: str) -> str:
    """A fresh 0700 directory named for this master, after removing those of dead ones."""
    sweep_metrics_dirs(prefix=prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def sweep_metrics_dirs(base: str | None = None, prefix: str = METRICS_PREFIX) -> list[str]:
    """Remove our directories whose master is gone (a kill -9 leaves them)."""
    root = Path(base or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(root.glob(prefix + "*"))
    except OSError:
        return removed
    for path in entries:
        pid_part = path.name[len(prefix):].split("-", 1)[0]
        try:
            if not pid_part.isdigit() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not pid_alive(int(pid_part)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


# ---------------------------------------------------------------- gunicorn hooks


def _service(worker: Any) -> Any | None:
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None) or {}
    return extensions.get("dynvm")


def post_fork(server: Any, worker: Any) -> None:
    """A worker never outlives its master, even when the master is SIGKILLed."""
    die_with_parent(signal.SIGKILL, server.pid)
    limit_malloc_arenas()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
MMAP_THRESHOLD = 256 * 1024


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each request thread a malloc arena of its own (up to 8 per core); the
    big transient blocks of a request (a page, a JSON body) then stay mapped in each.
    And once such a block is freed, glibc raises the size from which it maps blocks of
    their own (up to 32 MB), so later ones land in the heap and leave holes there when
    freed: a fixed threshold gives every block over 256 KB back to the system at once."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mallopt(M_ARENA_MAX, arenas)
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)


def quit_once(worker: Any) -> None:
    """Let a worker's quick stop run once, however many stop signals arrive.

    Ctrl-C reaches a worker twice: SIGINT from the terminal (the whole process
    group) and SIGQUIT from the master. gunicorn's gthread `handle_quit` holds
    the thread pool's shutdown lock for a moment; a second signal landing
    then re-entered it on the same thread and deadlocked on that lock until
    the master's SIGKILL, so the request in flight got no answer.
    """
    handle = worker.handle_quit
    quitting: list[int] = []

    def once(sig: int, frame: Any) -> None:
        if quitting:
            return  # the first stop is under way
        quitting.append(sig)
        handle(sig, frame)

    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, once)


def post_worker_init(worker: Any) -> None:
    """Warm the worker before it accepts, and cancel its builds when it is told to stop."""
    quit_once(worker)
    service = _service(worker)
    if service is None:
        return
    warm_up(service)
    # What warm-up loaded (every pool's views, the modules) lives as long as the worker:
    # the collector need not scan it again each time it looks for cycles.
    gc.freeze()
    original = signal.getsignal(signal.SIGTERM)

    def on_term(sig: int, frame: Any) -> None:
        timer = threading.Timer(FINISH_BEFORE_CANCEL_SECS, stop_requests, (service,))
        timer.daemon = True
        timer.start()
        if callable(original):
            original(sig, frame)

    signal.signal(signal.SIGTERM, on_term)


def worker_int(worker: Any) -> None:
    """Ctrl-C / quick stop: builds in flight are cancelled at once and answer 503."""
    service = _service(worker)
    if service is not None:
        stop_requests(service)


# The status a worker of this process exits with, (pid, code), as `worker_exit` saw it.
_exiting: tuple[int, int] | None = None


def worker_exit(server: Any, worker: Any) -> None:
    """Note the status this worker is exiting with, for `end_without_teardown`.

    gunicorn calls it from the `finally` around the worker's life, so the
    `SystemExit` under way is the exception being handled.
    """
    global _exiting
    code = exit_code(sys.exc_info()[1])
    if code is not None:
        _exiting = (os.getpid(), code)


def end_without_teardown() -> None:
    """Have this worker end, once its exit handlers ran, without tearing the interpreter down.

    A worker is a fork of the master, whose imports it shares page by page:
    deallocating every module and object at exit wrote to (so copied) those
    pages and took ~0.2 s of CPU per worker, as long as its start, on every
    stop and reload. Registered before the worker's own handlers (`build_app`
    closes the service in one), it runs after them: atexit handlers run last
    registered first, and Python joins the non-daemon threads before any.
    """
    atexit.register(_end_worker)


def _end_worker() -> None:
    if _exiting is not None and _exiting[0] == os.getpid():
        exit_now(_exiting[1])
    # else not a worker's exit that `worker_exit` saw: the usual teardown


def exit_code(exc: BaseException | None) -> int | None:
    """The status a process leaving with `exc` ends with; None unless a plain exit."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit) and isinstance(exc.code, int | None):
        return exc.code or 0
    return None


def exit_now(code: int) -> None:
    """End the process with `code` once its logs and output are written, skipping the
    interpreter's teardown (whatever must run at exit has run)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


# Libraries every worker imports, imported once by the master: a worker forked after
# that starts without the CPU they take to import (most of a new worker's start, taken
# from the old workers serving while a reload starts new ones). Only libraries that
# start no thread, open no file or socket and register no metric at import.
PRELOADED = ("flask", "jinja2", "prometheus_client", "pydantic", "werkzeug", "XenAPI", "yaml")


def preload_libraries() -> None:
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)


def child_exit(server: Any, worker: Any) -> None:
    """Let /metrics forget a dead worker's live gauges (its counters are kept)."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def stop_requests(service: Any) -> None:
    log.info("stopping: builds in flight are cancelled and rolled back")
    service.stop_requests()


def warm_up(service: Any, deadline_secs: float = WARM_UP_SECS) -> None:
    """Open the store and every pool's sessions and inventory now, not on the first request.

    Runs in a thread bounded by `deadline_secs`: an unreachable host must not
    keep a worker from serving the others.
    """
    started = time.monotonic()

    def load() -> None:
        try:
            service.warm_up()
        except Exception:
            log.exception("warm-up failed; the first requests will load what is missing")

    thread = threading.Thread(target=load, name="dynvm-warm-up", daemon=True)
    thread.start()
    thread.join(deadline_secs)
    log.info("worker warmed up in %.2fs%s", time.monotonic() - started,
             "" if not thread.is_alive() else " (gave up waiting)")
