"""What checkvms=true costs per VM: `python -m bench.ssh_bench`.

One SSH login (key exchange, password authentication, close) with the
client dynvm uses, against a simulated guest's SSH server, compared with the
TCP connect that the check used to be.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from bench.harness import percentile
from dynvm.guest.ssh import ssh_login
from dynvm.sim.guestsshd import GuestPorts
from testbed.serving import free_port

GUEST = "127.16.251.7"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--logins", type=int, default=100)
    args = ap.parse_args()
    port = free_port()
    ports = GuestPorts(port, {"root": "bench"})
    try:
        ports.open(GUEST)
        ssh_login(GUEST, port, "root", "bench", 10.0)  # warm: imports, first key exchange
        logins, connects = [], []
        for _ in range(args.logins):
            start = time.perf_counter()
            ssh_login(GUEST, port, "root", "bench", 10.0)
            logins.append(time.perf_counter() - start)
            start = time.perf_counter()
            with socket.create_connection((GUEST, port), timeout=3.0):
                pass
            connects.append(time.perf_counter() - start)
    finally:
        ports.stop()
    for what, xs in (("SSH login", logins), ("TCP connect", connects)):
        print(f"{what:12s} p50 {statistics.median(xs) * 1000:7.1f} ms   "
              f"p95 {percentile(xs, 95) * 1000:7.1f} ms   ({len(xs)} runs)")


if __name__ == "__main__":
    main()
