"""Reads never wait behind builds: a request waiting for its VMs lends its gunicorn thread.

Served with one worker of two threads, four `getservers` are caught at the
start of their builds (the simulator holds `VM.start_on`). Once as many are
held as the worker has threads, and again once all four are, /showall,
/getavailablecount and /health still answer; every getservers completes once
the builds may go on. In-process, a v1 long poll on a held build lends the one
request thread it runs on, so /showall is answered beside it.
"""

from __future__ import annotations

import json
import threading

import pytest
import requests

from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.runtime import threads
from dynvm.runtime.bootstrap import build_service
from dynvm.runtime.threads import RequestThreads
from tests.service.conftest import FAST, _release_everything, served, wait_until, write_ini

THREADS = 2
CALLERS = 2 * THREADS
READ_SECS = 60  # generous: an answer only has to come at all, not fast


def starts(farm) -> int:
    return sum(n for per_host in farm.call_counts().values() for m, n in per_host.items()
               if m.endswith("VM.start_on") or m.endswith("VM.start"))


def reads_answer(base: str) -> None:
    for path in ("/showall", "/getavailablecount/centos", "/health"):
        r = requests.get(base + path, timeout=READ_SECS)
        assert r.status_code in ((200, 503) if path == "/health" else (200,)), r.text


@pytest.mark.served
def test_reads_answer_while_every_thread_has_a_build_waiting(tmp_path, farm, clean_farm,
                                                              probe) -> None:
    ini = write_ini(tmp_path, farm)
    with served(ini, workers=1, threads=THREADS, log=tmp_path / "serve.log") as (base, _):
        hold = farm.hold("VM.start_on")
        answers: dict[int, requests.Response] = {}
        before = starts(farm)

        def get(i: int) -> None:
            answers[i] = requests.get(f"{base}/getservers/rb{i}?os=centos&ignorelabels=true",
                                      timeout=300)
        callers = [threading.Thread(target=get, args=(i,)) for i in range(CALLERS)]
        try:
            for t in callers:
                t.start()
            # Every request thread the worker was given now waits for a build.
            wait_until(lambda: starts(farm) - before >= THREADS, timeout=120,
                       what="as many getservers as threads to reach the start of a build")
            reads_answer(base)
            # ... and so do the requests beyond them: none of them queues either.
            wait_until(lambda: starts(farm) - before >= CALLERS, timeout=120,
                       what="every getservers to reach the start of its build")
            reads_answer(base)
            assert answers == {}  # every build is still held
        finally:
            hold.release()
            for t in callers:
                t.join(timeout=300)
            for i in range(CALLERS):
                requests.get(f"{base}/releaseservers/rb{i}", timeout=120)
        assert sorted(answers) == list(range(CALLERS))
        assert all(r.status_code == 200 and len(json.loads(r.text)) == 1
                   for r in answers.values()), {i: r.text for i, r in answers.items()}
        assert probe.vms_named("rb") == []


def test_a_v1_long_poll_lends_its_thread(tmp_path, farm, clean_farm, monkeypatch) -> None:
    """In-process, with the request threads of a worker that has one: a v1 long poll on
    a build held at its start lends that thread, and /showall is answered meanwhile."""
    pool = RequestThreads(1)
    monkeypatch.setattr(threads, "_pool", pool)  # as gunicorn's worker sets it
    svc = build_service(str(write_ini(tmp_path, farm)), timings=FAST)
    app = create_app(service=svc)
    secret, _ = tokens.create(svc.ctx.store, "team-lp")
    h = {"Authorization": f"Bearer {secret}"}
    hold = farm.hold("VM.start_on")
    location = None
    try:
        before = starts(farm)
        r = app.test_client().post("/api/v1/requests", json={"os": "centos", "name": "lp"},
                                   headers=h)
        assert r.status_code == 202, r.json
        location = r.headers["Location"]
        wait_until(lambda: starts(farm) > before, timeout=120, what="the build to start")
        poll = pool.submit(lambda: app.test_client().get(f"{location}?wait=120", headers=h))
        wait_until(lambda: pool.lent == 1, timeout=60, what="the long poll to lend its thread")
        read = pool.submit(lambda: app.test_client().get("/showall"))
        assert read.result(timeout=READ_SECS).status_code == 200
        assert not poll.done()  # still waiting: the build is held
        hold.release()
        assert poll.result(timeout=120).status_code == 200
        assert finished(app, location, h)["state"] == "done"
    finally:
        hold.release()
        if location is not None:
            finished(app, location, h)  # nothing is left half built
        svc.background.stop()
        _release_everything(svc)
        svc.close()
        pool.shutdown(wait=True)


def finished(app, location: str, h: dict[str, str]) -> dict:
    def done() -> dict | None:
        body = app.test_client().get(f"{location}?wait=5", headers=h).json
        return body if body["state"] != "running" else None
    return wait_until(done, timeout=180, what="the request to finish")
