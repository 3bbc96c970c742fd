"""A full disk: the SQLite store reports an outage (StoreUnavailable), never a raw error.

The disk fills for real: a child process runs under RLIMIT_FSIZE, so the
kernel refuses to grow the store's files past their size, as a full disk does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, signal, sys
from dynvm.core.store import StoreUnavailable
from dynvm.store.sqlite import SqliteStore

path = sys.argv[1]
store = SqliteStore(path)
store.history.put("seed", {"created_time": 1.0, "pad": ""})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
HARD = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, HARD))  # soft: lifted again below
out = {"unavailable": 0, "other": []}
for i in range(400):
    try:
        store.history.put(f"vm{i}", {"created_time": float(i), "pad": "x" * 4000})
    except StoreUnavailable:
        out["unavailable"] += 1
        break
    except Exception as exc:
        out["other"].append(repr(exc))
        break
try:
    store.ping_write()
    out["probe"] = "ok"
except StoreUnavailable as exc:
    out["probe"] = "unavailable"
except Exception as exc:
    out["probe"] = repr(exc)
out["read"] = store.history.get("seed") is not None
resource.setrlimit(resource.RLIMIT_FSIZE, (HARD, HARD))
store.history.put("after", {"created_time": 2.0, "pad": "x" * 4000})  # room again
store.ping_write()  # and the probe says so: raises if it still reported the old fault
out["recovered"] = store.history.get("after") is not None
print(json.dumps(out))
"""


def test_full_disk_is_an_outage_and_the_write_probe_sees_it(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "dynvm.sqlite")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["other"] == [], out
    assert out["unavailable"] == 1, out
    assert out["probe"] == "unavailable", out  # /health's write probe reports it
    assert out["read"] is True  # what is stored can still be read
    assert out["recovered"] is True, out
