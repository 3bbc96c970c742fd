"""What a test starts dies with the test process, however that ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.serving import alive, wait_until

# A test process that starts a process group from a thread which then ends (the case
# PR_SET_PDEATHSIG gets wrong), says its pid, and lives on until killed.
STARTER = """
import threading, time
from testbed.processes import GroupProcess

started = []
t = threading.Thread(target=lambda: started.append(GroupProcess(["sleep", "300"])))
t.start()
t.join()
print(started[0].pid, flush=True)
time.sleep(300)
"""


def test_a_group_outlives_the_thread_that_started_it_but_not_the_killed_process() -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        assert alive(pid)  # the thread that started it has ended
        starter.kill()  # no cleanup of its own runs
        starter.wait()
        wait_until(lambda: not alive(pid), timeout=30,
                   what="the group to die with the process that started it")
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
