"""Run a simulated farm in the foreground (`dynvm sim`, or `python -m dynvm.sim.runner`).

`dynvm serve` starts this as a child process and waits for `--ini-out` to
appear: the file is written atomically, and only once every listener is up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from typing import Any

from .farm import Farm
from .ssh_options import announce


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".sim-ini-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def build_farm(hosts: int, pools: int, vms_per_host: int, from_db: list[str], bind: str,
               port_base: int, speed: float, https: bool, password: str = "xenroot",
               guest_ssh_port: int | None = None,
               guest_logins: dict[str, str] | None = None, host_cpus: int = 48,
               shared_sr: bool = False) -> Farm:
    common: dict[str, Any] = dict(speed=speed, https=https, bind=bind, port_base=port_base, password=password,
                  guest_ssh_port=guest_ssh_port, guest_logins=guest_logins)
    if from_db:
        return Farm.from_db(list(from_db), **common)
    return Farm.generate(pools=pools, hosts=hosts, vms_per_host=vms_per_host, host_cpus=host_cpus,
                         guest_storage="shared" if shared_sr else "local", **common)


def run_sim(hosts: int, pools: int, vms_per_host: int, from_db: list[str], bind: str,
            port_base: int, speed: float, https: bool, ini_out: str | None = None,
            password: str = "xenroot", stop_event: threading.Event | None = None,
            guest_ssh_port: int | None = None,
            guest_logins: dict[str, str] | None = None,
            local_socket: str | None = None, host_cpus: int = 48,
            shared_sr: bool = False) -> None:
    """Start a farm, announce it, and serve until Ctrl-C / SIGTERM (or `stop_event`)."""
    farm = build_farm(hosts, pools, vms_per_host, from_db, bind, port_base, speed, https,
                      password, guest_ssh_port, guest_logins, host_cpus, shared_sr)
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    farm.start()
    try:
        ini = farm.ini_sections()
        total = sum(len(p.hosts) for p in farm.pools)
        storage = (f"guests on the shared SR '{farm.storage_name}' (they can live-migrate)"
                   if shared_sr else "guests on each host's local SR")
        print(f"# dynvm simulated farm: {len(farm.pools)} pool(s), {total} host(s), "
              f"{storage}, speed x{farm.timing.speed:g}")
        print(f"# control endpoint: {farm.control_url}")
        if local_socket:
            farm.serve_local_socket(local_socket)
            print(f"# local socket: {local_socket}")
        print(announce(guest_ssh_port, guest_logins), end="")
        print(ini, flush=True)
        if ini_out:
            _write_atomically(ini_out, ini)
        while not stop.wait(0.5):
            pass
    finally:
        farm.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dynvm sim", description="Run a simulated XenServer farm.")
    ap.add_argument("--hosts", type=int, default=4, help="hosts per generated pool")
    ap.add_argument("--pools", type=int, default=1)
    ap.add_argument("--vms-per-host", type=int, default=0)
    ap.add_argument("--host-cpus", type=int, default=48, help="CPUs of each generated host")
    ap.add_argument("--from-db", action="append", default=[], metavar="FILE",
                    help="load a pool from a state.db dump (repeatable)")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port-base", type=int, default=0, help="0: ephemeral ports")
    ap.add_argument("--speed", type=float, default=1.0, help="divide every simulated delay")
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--shared-sr", action="store_true",
                    help="guests' disks on a shared SR, so that they can live-migrate")
    ap.add_argument("--ini-out", default=None)
    ap.add_argument("--password", default=os.environ.get("DYNVM_SIM_PASSWORD", "xenroot"))
    args = ap.parse_args(argv)
    run_sim(args.hosts, args.pools, args.vms_per_host, args.from_db, args.bind, args.port_base,
            args.speed, args.https, args.ini_out, args.password, host_cpus=args.host_cpus,
            shared_sr=args.shared_sr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
