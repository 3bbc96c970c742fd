#!/usr/bin/env python3
"""Which XenAPI messages `dynvm sim` implements, for the classes automation
tools use: VM, VBD, VDI, VIF, SR, PBD, PIF, network, host, pool, task, event,
session and the metrics classes.

A message counts as implemented when the simulator serves it: a behaviour in
its handler table (dynvm/sim/handlers.py), or a generic record, field or map
accessor. Every other message answers as XAPI answers one it does not know
(`MESSAGE_METHOD_UNKNOWN`).

The message lists are XAPI's own: those of xen-api's doc/data/xenapi.json
(the 2024-03 description kept in shared/docs/ beside this repository),
trimmed to the names of these classes' messages in
tools/xenapi_messages.json so that the tool runs on a clean clone.
`--refresh PATH` rewrites that file from a xenapi.json.

Usage: python tools/sim_coverage.py [--missing] [--refresh path/to/xenapi.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dynvm.sim.dispatch import handler_for, resolve

REPO = Path(__file__).resolve().parent.parent
MESSAGES_FILE = REPO / "tools" / "xenapi_messages.json"
CLASSES = ("VM", "VBD", "VDI", "VIF", "SR", "PBD", "PIF", "network", "host", "pool", "task",
           "event", "session", "VM_metrics", "VM_guest_metrics", "host_metrics",
           "VBD_metrics", "VIF_metrics", "PIF_metrics")


def trim(xenapi: list[dict]) -> dict[str, list[str]]:
    """The message names of CLASSES in a parsed xenapi.json, sorted."""
    by_name = {c["name"]: c for c in xenapi}
    return {cls: sorted(m["name"] for m in by_name[cls]["messages"]) for cls in CLASSES}


def load_messages(path: Path = MESSAGES_FILE) -> dict[str, list[str]]:
    return dict(json.loads(path.read_text()))


def implemented(cls: str, message: str) -> bool:
    res = resolve(f"{cls}.{message}")
    return res is not None and handler_for(res) is not None


def coverage(messages: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Class -> (implemented messages, messages not implemented)."""
    out = {}
    for cls, names in messages.items():
        done = [m for m in names if implemented(cls, m)]
        out[cls] = (done, [m for m in names if m not in done])
    return out


def figure(cov: dict[str, tuple[list[str], list[str]]]) -> tuple[int, int]:
    """(implemented, total) over all the classes."""
    done = sum(len(d) for d, _ in cov.values())
    return done, done + sum(len(m) for _, m in cov.values())


def summary(cov: dict[str, tuple[list[str], list[str]]]) -> str:
    """The sentence the README's simulator section carries."""
    done, total = figure(cov)
    return f"implements {done} of the {total} messages ({100 * done // total} %)"


def report(cov: dict[str, tuple[list[str], list[str]]], missing: bool) -> str:
    lines = [f"{'class':<18}{'implemented':>12}{'of':>6}"]
    for cls, (done, todo) in cov.items():
        lines.append(f"{cls:<18}{len(done):>12}{len(done) + len(todo):>6}")
        if missing and todo:
            lines.append("    not implemented: " + ", ".join(todo))
    lines.append(f"The simulator {summary(cov)} of these classes.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missing", action="store_true", help="list the messages not implemented")
    ap.add_argument("--refresh", type=Path, metavar="XENAPI_JSON",
                    help=f"rewrite {MESSAGES_FILE.name} from this xenapi.json first")
    args = ap.parse_args(argv)
    if args.refresh:
        trimmed = trim(json.loads(args.refresh.read_text()))
        MESSAGES_FILE.write_text(json.dumps(trimmed, indent=1) + "\n")
    print(report(coverage(load_messages()), args.missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
