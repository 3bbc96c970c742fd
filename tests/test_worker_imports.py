"""What a `dynvm serve` worker imports to start: not the heavy libraries only some
requests need (they cost every worker megabytes; see README, Performance)."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = ("cryptography", "pycdlib", "paramiko")  # key checks, config drives, guest SSH


def test_a_worker_starts_without_the_libraries_few_requests_need() -> None:
    code = ("import json, sys; import dynvm.runtime.bootstrap, dynvm.runtime.threads, "
            "dynvm.api, dynvm.xen.pool, dynvm.store.factory; "
            f"print(json.dumps([m for m in {list(LAZY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []
