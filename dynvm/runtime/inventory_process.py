"""`dynvm serve`'s inventory process: started by the master, dead with it.

The master starts it before gunicorn forks a worker and hands the workers its
socket and key through the environment (`dynvm.xen.shared_inventory`). Like
the embedded farm it dies with the master through the kernel's parent-death
signal (kill -9 included); a clean stop ends it. If it exits on its own the
master starts it again: workers reconnect to the same socket and receive the
views afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from dynvm.runtime import serving
from dynvm.xen.shared_inventory import ADDRESS_ENV, KEY_ENV, socket_address

log = logging.getLogger("dynvm.inventory")

RESTART_PAUSE_SECS = 1.0
# What the master sends when its workers are gone (TERM and INT are for the group).
STOP_SIGNAL = signal.SIGUSR1


class InventoryProcess:
    """The child process and the thread that starts it again should it exit."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.master = os.getpid()
        self.stopping = threading.Event()
        self.proc = self._spawn()
        self._watch = threading.Thread(target=self._supervise, daemon=True,
                                       name="inventory-process")
        self._watch.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-m", "dynvm.runtime.inventory_process", "--socket", self.name],
            env=self.env, stdin=subprocess.DEVNULL,
            preexec_fn=serving.child_preexec(self.master))

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            code = self.proc.wait()
            if self.stopping.is_set() or os.getpid() != self.master:
                return
            log.warning("the inventory process exited (%s); starting it again", code)
            # One that fails at once is not restarted in a tight loop.
            self.stopping.wait(max(RESTART_PAUSE_SECS - (time.monotonic() - self.started), 0))
            if not self.stopping.is_set():
                self.proc = self._spawn()

    def stop(self) -> None:
        self.stopping.set()
        serving.stop_pid(self.proc.pid, sig=STOP_SIGNAL)


@contextlib.contextmanager
def running() -> Iterator[InventoryProcess]:
    """The inventory process for this master's workers (named in the environment)."""
    name = f"dynvm-inventory-{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[ADDRESS_ENV] = name
    os.environ[KEY_ENV] = secrets.token_hex(32)
    process = InventoryProcess(name, dict(os.environ))
    try:
        yield process
    finally:
        if os.getpid() == process.master:  # workers unwind the master's stack too
            process.stop()


def main(argv: list[str] | None = None) -> None:
    from dynvm.xen.inventory_host import InventoryHost

    parser = argparse.ArgumentParser(description="dynvm serve's shared inventory process")
    parser.add_argument("--socket", required=True, help="abstract Unix socket name to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[inventory] %(levelname)s %(name)s: %(message)s")
    host = InventoryHost(socket_address(args.socket), bytes.fromhex(os.environ[KEY_ENV]))
    signal.signal(STOP_SIGNAL, lambda *_: host.stop())
    # Ctrl-C and a TERM of the group reach the workers too: they finish their requests
    # with this process's help, and the master stops it (STOP_SIGNAL) once they are gone.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    log.info("serving the pools' inventories on %s", args.socket)
    host.serve_forever()


if __name__ == "__main__":
    main()
