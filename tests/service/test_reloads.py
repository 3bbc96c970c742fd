"""`dynvm serve` survives what operators do to it: HUP, worker restarts, kill -9, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dynvm.runtime.serving import quit_once
from dynvm.sim import Farm
from testbed.processes import GroupProcess
from testbed.serving import alive, children, serve_command, workers
from tests.service.conftest import FarmProbe, served, wait_until, write_ini
from tests.support.files import not_private

pytestmark = pytest.mark.served

CLIENTS = 16


class Load:
    """CLIENTS threads asking read routes over fresh connections, counting every answer."""

    ROUTES = ("/showall", "/getavailablecount/centos", "/health", "/metrics")

    def __init__(self, base: str) -> None:
        self.base = base
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.answered = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def _run(self, i: int) -> None:
        n = 0
        while not self.done.is_set():
            route = self.ROUTES[(i + n) % len(self.ROUTES)]
            n += 1
            try:
                r = requests.get(self.base + route, timeout=120,
                                 headers={"Connection": "close"})
                ok = r.status_code == 200
                what = f"{route}: {r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                ok, what = False, f"{route}: {exc!r}"
            with self.lock:
                self.answered += 1
                if not ok:
                    self.failures.append(what)

    def count(self) -> int:
        with self.lock:
            return self.answered

    def at_least(self, more: int) -> None:
        """Wait until `more` further requests were answered (the service kept serving)."""
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout=120, what=f"{more} more answers")

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=150)


def test_hup_and_worker_term_under_load_fail_no_request(tmp_path, farm, clean_farm) -> None:
    log = tmp_path / "serve.log"
    with served(write_ini(tmp_path, farm), workers=2, log=log) as (base, proc):
        wait_until(lambda: len(workers(proc.pid)) == 2, timeout=60, what="two workers")
        with Load(base) as load:
            load.at_least(50)
            before = workers(proc.pid)
            os.kill(proc.pid, signal.SIGHUP)
            wait_until(lambda: len(workers(proc.pid)) == 2 and
                       not (workers(proc.pid) & before), timeout=120,
                       what="the workers to be replaced after HUP")
            load.at_least(100)
            victim = min(workers(proc.pid))
            os.kill(victim, signal.SIGTERM)
            wait_until(lambda: victim not in workers(proc.pid) and
                       len(workers(proc.pid)) == 2, timeout=120,
                       what="gunicorn to replace the worker")
            load.at_least(100)
        assert proc.poll() is None, log.read_text()
        assert load.failures == [], load.failures[:10]
        metrics = requests.get(base + "/metrics", timeout=30)
        assert metrics.status_code == 200
        assert "dynvm_http_requests_total" in metrics.text
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_hup_brings_workers_warm_at_once_from_the_shared_inventory(tmp_path, farm,
                                                                   clean_farm) -> None:
    """The workers of a reload read no pool: the inventory process hands them its views,
    so however big the farm, a new worker serves at once and no request waits for it."""
    log = tmp_path / "serve.log"
    with served(write_ini(tmp_path, farm), workers=2, log=log) as (base, proc):
        wait_until(lambda: log.read_text().count("worker warmed up") >= 2, timeout=60,
                   what="both workers to warm up")
        old = workers(proc.pid)
        assert len(children(proc.pid) - old) == 1  # the inventory process
        with Load(base) as load:
            load.at_least(20)
            farm.reset_call_counts()
            os.kill(proc.pid, signal.SIGHUP)
            wait_until(lambda: len(workers(proc.pid)) == 2 and not (workers(proc.pid) & old),
                       timeout=120, what="the old workers to stop once the new ones serve")
            load.at_least(50)
        reads = {m: n for per in farm.call_counts().values() for m, n in per.items()
                 if m.endswith("get_all_records") or m.endswith("login_with_password")}
        assert reads == {}, reads
        assert proc.poll() is None, log.read_text()
        assert load.failures == [], load.failures[:10]
        assert log.read_text().count("worker warmed up") == 4
        assert "gave up waiting" not in log.read_text()


def test_a_lost_inventory_process_is_started_again_and_workers_follow(tmp_path, farm,
                                                                      clean_farm) -> None:
    log = tmp_path / "serve.log"
    with served(write_ini(tmp_path, farm), workers=2, log=log) as (base, proc):
        wait_until(lambda: len(workers(proc.pid)) == 2, timeout=60, what="two workers")
        (inventory,) = children(proc.pid) - workers(proc.pid)
        os.kill(inventory, signal.SIGKILL)
        wait_until(lambda: len(children(proc.pid) - workers(proc.pid) - {inventory}) == 1,
                   timeout=60, what="the master to start the inventory process again")
        farm.reset_call_counts()

        def answers() -> bool:
            r = requests.get(base + "/showall", timeout=30, headers={"Connection": "close"})
            return r.status_code == 200 and r.json() != {}

        wait_until(lambda: all(answers() for _ in range(4)), timeout=120,
                   what="every worker to read the new inventory process's views")
        # Each pool read once at most, for both workers (it may have been read before the
        # count was reset, as a request found the new process).
        assert sum(per.get("VM.get_all_records", 0)
                   for per in farm.call_counts().values()) <= len(farm.pools)
        assert proc.poll() is None
    assert "starting it again" in log.read_text()


def test_workers_are_warm_before_their_first_request(tmp_path, farm, clean_farm) -> None:
    log = tmp_path / "serve.log"
    with served(write_ini(tmp_path, farm), workers=2, log=log) as (base, proc):
        wait_until(lambda: log.read_text().count("worker warmed up") >= 2, timeout=60,
                   what="both workers to warm up")
        # The harness's readiness probe already hit one worker; from now on no request
        # may make a worker read a pool's VMs: it has them already.
        farm.reset_call_counts()
        for _ in range(8):
            assert requests.get(base + "/showall", timeout=30,
                                headers={"Connection": "close"}).status_code == 200
        reads = {m: n for per in farm.call_counts().values() for m, n in per.items()
                 if m.endswith("get_all_records") or m.endswith("login_with_password")}
        assert reads == {}, reads


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator:
    """Start `dynvm serve` on its embedded farm in tmp_path; kill whatever is left after."""
    started: list[GroupProcess] = []

    def start(log_name: str, umask: int = -1) -> tuple[GroupProcess, int, Path]:
        log = tmp_path / log_name
        env = {k: v for k, v in os.environ.items() if k != "DYNVM_CONFIG"}
        env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            proc = GroupProcess(
                serve_command("--bind", "127.0.0.1:0", "--workers", "2", "--sim-speed", "200"),
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, umask=umask)
        started.append(proc)
        m = wait_until(lambda: re.search(r"embedded simulated farm up \(pid (\d+)",
                                         log.read_text()) or proc.poll() is not None,
                       timeout=120, what="the embedded farm")
        assert proc.poll() is None, log.read_text()
        wait_until(lambda: "Listening at" in log.read_text(), timeout=120, what="gunicorn")
        return proc, int(m.group(1)), log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_9_of_serve_leaves_no_process(embedded, tmp_path) -> None:
    proc, farm_pid, log = embedded("serve.log")
    wait_until(lambda: len(workers(proc.pid)) == 2, timeout=60, what="the workers")
    family = children(proc.pid)
    assert farm_pid in family
    assert len(family) == 4, family  # the farm, the inventory process, two workers
    proc.kill()
    proc.wait()
    # PR_SET_PDEATHSIG: the kernel kills each of them as the parent dies; 5 s is plenty.
    wait_until(lambda: not any(alive(p) for p in family), timeout=5,
               what=f"every child of dynvm serve to die ({family})")


def test_embedded_state_is_private_under_any_umask(embedded, tmp_path) -> None:
    """Under umask 0, `.dynvm/` (farm log, pid file, INI files, store) and the Prometheus
    directory are still 0700 directories of 0600 files."""
    proc, _, log = embedded("serve.log", umask=0)
    base = "http://" + wait_until(lambda: re.search(r"serving on http://(\S+) ", log.read_text()),
                                  timeout=60, what="the banner").group(1)
    wait_until(lambda: requests.get(base + "/health", timeout=30).status_code == 200,
               timeout=120, what="the service to be healthy")
    assert requests.get(base + "/metrics", timeout=30).status_code == 200
    state = tmp_path / ".dynvm"
    assert {"embedded-farm.log", "embedded-farm.pid", "embedded-farm.ini", "dynvmservice.ini",
            "dynvm.sqlite"} <= {p.name for p in state.iterdir()}
    assert not_private(state) == {}
    metrics = list(tmp_path.glob("dynvm-metrics-*"))
    assert len(metrics) == 1 and any(metrics[0].iterdir()), metrics
    assert not_private(metrics[0]) == {}


def test_stale_farm_of_an_earlier_run_is_stopped(embedded, tmp_path) -> None:
    state = tmp_path / ".dynvm"
    state.mkdir()
    # A farm of an earlier run whose `dynvm serve` is gone (as the code before
    # PR_SET_PDEATHSIG left it), recorded in the pid file.
    stale = GroupProcess(
        [sys.executable, "-m", "dynvm.sim.runner", "--hosts", "1", "--speed", "200",
         "--ini-out", str(state / "stale.ini"), "--port-base", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    # Its parent is gone in real life, so init reaps it the moment it exits; here the
    # test is its parent and must do that itself, or it lingers as a zombie that
    # `dynvm serve` can only wait out.
    reaper = threading.Thread(target=stale.wait, daemon=True)
    reaper.start()
    try:
        wait_until(lambda: (state / "stale.ini").exists(), timeout=60, what="the stale farm")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (state / "embedded-farm.pid").write_text(f"{stale.pid} {dead.pid}\n")
        proc, farm_pid, log = embedded("serve.log")
        reaper.join(timeout=30)
        assert stale.poll() is not None
        assert farm_pid != stale.pid
        assert f"stale embedded farm (pid {stale.pid})" in log.read_text()
        assert alive(farm_pid)
        assert (state / "embedded-farm.pid").read_text().split()[0] == str(farm_pid)
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def test_a_second_stop_signal_does_not_reenter_the_quick_stop() -> None:
    """Ctrl-C brings SIGINT (the process group) and SIGQUIT (the master) to a worker.

    gunicorn's gthread quick stop holds a plain lock for a moment; re-entered
    by the second signal on the same thread it would wait on itself forever.
    """
    lock = threading.Lock()
    calls: list[int] = []

    class Worker:
        def handle_quit(self, sig: int, frame: object) -> None:
            calls.append(sig)
            if not lock.acquire(timeout=5):
                raise AssertionError("the quick stop was re-entered while it held its lock")
            try:
                if len(calls) == 1:
                    signal.raise_signal(signal.SIGQUIT)  # the master's, mid-way
            finally:
                lock.release()

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        quit_once(Worker())
        signal.raise_signal(signal.SIGINT)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert calls == [signal.SIGINT]


def test_ctrl_c_answers_503_to_a_build_in_flight_and_rolls_it_back(tmp_path) -> None:
    # Its guests never get an address: a build waits for one until it is cancelled.
    slow = Farm.generate(pools=1, hosts=1, speed=200.0).start()
    slow.exhaust_dhcp()
    probe = FarmProbe(slow)
    log = tmp_path / "serve.log"
    answer: dict = {}
    try:
        with served(write_ini(tmp_path, slow), workers=1, log=log) as (base, proc):
            def ask() -> None:
                try:
                    r = requests.get(base + "/getservers/stopme?os=centos", timeout=120)
                    answer.update(status=r.status_code, text=r.text)
                except requests.RequestException as exc:
                    answer.update(status=None, text=repr(exc))

            client = threading.Thread(target=ask, daemon=True)
            client.start()
            wait_until(lambda: probe.vms_named("stopme"), timeout=60,
                       what="the build to start")
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            client.join(timeout=60)
            assert proc.wait(timeout=60) is not None
        text = log.read_text()
        assert answer.get("status") == 503, (answer, text[-3000:])
        assert "stopping" in answer["text"], answer
        assert "SIGKILL" not in text, text[-3000:]
        wait_until(lambda: probe.vms_named("stopme") == [], timeout=60,
                   what="the cancelled VM to be destroyed")
    finally:
        slow.stop()
