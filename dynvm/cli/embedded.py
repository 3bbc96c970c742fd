"""The simulated farm `dynvm serve` runs beside itself when it is given no INI file.

`make run` on a fresh machine needs a farm to serve: a child process runs one
(`dynvm.sim.runner`), writes the INI of its hosts, and dies with `dynvm serve`,
kill -9 included. A farm an earlier run left behind is stopped first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

# Two pools of two hosts, guests on shared storage (VMs can live-migrate, so a rolling
# reboot can empty a host).
EMBEDDED_POOLS = 2
EMBEDDED_HOSTS = 2
EMBEDDED_START_SECS = 60.0


@contextlib.contextmanager
def embedded_farm(state_dir: Path, speed: float,
                  deadline_secs: float = EMBEDDED_START_SECS) -> Iterator[str]:
    """Run a simulated farm as a child process; yield a service INI pointing at it."""
    from dynvm.private_files import open_private, private_dir, write_private
    from dynvm.runtime import serving

    owner = os.getpid()
    private_dir(state_dir)
    state = state_dir.resolve()
    ini_out = state / "embedded-farm.ini"
    ini_out.unlink(missing_ok=True)
    log_path = state / "embedded-farm.log"
    pid_file = state / "embedded-farm.pid"
    _stop_stale_farm(pid_file)
    cmd = [sys.executable, "-m", "dynvm.sim.runner", "--pools", str(EMBEDDED_POOLS),
           "--hosts", str(EMBEDDED_HOSTS), "--shared-sr", "--speed", str(speed),
           "--ini-out", str(ini_out), "--port-base", "0"]
    with open_private(log_path) as log:
        # The kernel kills the farm when this process dies, kill -9 included.
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=serving.child_preexec(os.getpid()))
    write_private(pid_file, f"{child.pid} {os.getpid()}\n")
    try:
        sections = _wait_for_ini(child, ini_out, log_path, deadline_secs)
        service_ini = state / "dynvmservice.ini"
        write_private(service_ini, (
            "; written by `dynvm serve` for its embedded simulated farm\n"
            "[store]\nbackend=sqlite\n"
            f"sqlite.path={state / 'dynvm.sqlite'}\n"
            f"outbox.path={state / 'outbox.sqlite'}\n\n" + sections
        ))
        click.echo(f"embedded simulated farm up (pid {child.pid}, log {log_path})")
        yield str(service_ini)
    finally:
        if os.getpid() == owner:  # not in a gunicorn worker unwinding this stack
            _stop_child(child)
            pid_file.unlink(missing_ok=True)


def _stop_stale_farm(pid_file: Path) -> None:
    """Stop a farm an earlier `dynvm serve` of this state dir left running.

    Refuses when that `dynvm serve` still runs: two of them would share one store.
    """
    from dynvm.runtime import serving

    try:
        farm_pid, serve_pid = (int(x) for x in pid_file.read_text().split()[:2])
    except (OSError, ValueError):
        return
    if serve_pid != os.getpid() and serving.pid_alive(serve_pid) and \
            "serve" in serving.cmdline(serve_pid):
        raise click.ClickException(
            f"another dynvm serve (pid {serve_pid}) uses {pid_file.parent}; stop it first")
    if "dynvm.sim.runner" in serving.cmdline(farm_pid):
        click.echo(f"stopping a stale embedded farm (pid {farm_pid}) left by an earlier run")
        serving.stop_pid(farm_pid)
    pid_file.unlink(missing_ok=True)


def _wait_for_ini(child: subprocess.Popen[bytes], ini_out: Path, log_path: Path,
                  deadline_secs: float) -> str:
    deadline = time.monotonic() + deadline_secs
    while time.monotonic() < deadline:
        if ini_out.exists():
            return ini_out.read_text()
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise click.ClickException(
                f"the embedded simulated farm exited with status {child.returncode}:\n{tail}")
        time.sleep(0.05)
    raise click.ClickException(
        f"the embedded simulated farm did not write {ini_out} within {deadline_secs:.0f}s "
        f"(see {log_path})")


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)
