"""What operators monitor, against dynvm under gunicorn with two workers.

/metrics must agree with the simulator's truth whichever worker answers and
pass `promtool check metrics`; one request id must follow a request from
its HTTP answer through the store and the history to the log lines.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dynvm.core import trace
from dynvm.runtime.logs import JsonFormatter, dict_config
from testbed.serving import served, wait_until
from tests.service.conftest import FarmProbe, write_ini

pytestmark = pytest.mark.served


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _truth(probe: FarmProbe, farm) -> tuple[Counter, dict, int]:
    """(dynvm VMs running per (os, member host), free memory per member, foreign running)."""
    mine: Counter = Counter()
    free: dict[str, int] = {}
    foreign = 0
    for i in range(len(farm.pools)):
        s = probe.session(i)
        try:
            x = s.xenapi
            hosts = x.host.get_all_records()
            names = {ref: h["name_label"] for ref, h in hosts.items()}
            for h in hosts.values():
                free[h["name_label"]] = int(x.host_metrics.get_memory_free(h["metrics"]))
            for r in x.VM.get_all_records().values():
                if r["is_a_template"] or r["is_control_domain"] or r["power_state"] != "Running":
                    continue
                if "dynvm_owner" in r["other_config"]:
                    mine[(r["other_config"].get("dynvm_os", ""), names[r["resident_on"]])] += 1
                else:
                    foreign += 1
        finally:
            s.xenapi.session.logout()
    return mine, free, foreign


def _gauges(fams: dict) -> tuple[Counter, dict, int]:
    mine: Counter = Counter()
    foreign = 0
    for s in fams["dynvm_vms"].samples:
        if s.labels["state"] == "foreign":
            foreign += int(s.value)
        else:
            mine[(s.labels["os"], s.labels["host"])] += int(s.value)
    free = {s.labels["host"]: int(s.value) for s in fams["dynvm_host_memory_free_bytes"].samples}
    return +mine, free, foreign


def test_gauges_match_the_farm_with_two_workers(tmp_path: Path, farm, probe, clean_farm
                                                ) -> None:
    ini = write_ini(tmp_path, farm)
    with served(ini, workers=2, log=tmp_path / "serve.log") as (base, _):
        def get(path: str) -> requests.Response:
            return requests.get(base + path, timeout=120)

        assert get("/getservers/obsa?os=centos&count=3").status_code == 200
        assert get("/getservers/obsb?os=centos&count=2").status_code == 200
        assert get("/getservers/obsc?os=centos&count=1").status_code == 200
        assert get("/releaseservers/obsb?count=2").status_code == 200
        assert get("/setexpiry/obsc/0?from=created").status_code == 200
        wait_until(lambda: not probe.vms_named("obsc"), timeout=60, what="obsc to expire")

        def agrees() -> dict | None:
            fams = _families(get("/metrics").text)
            return fams if _gauges(fams) == _truth(probe, farm) else None

        # Every scrape (either worker) must agree once the inventory has caught up.
        for _ in range(6):
            fams = wait_until(agrees, timeout=30, what="/metrics to match the farm")
        mine, _, _ = _gauges(fams)
        assert sum(mine.values()) == 3
        leased = sum(s.value for s in fams["dynvm_vms"].samples if s.labels["state"] == "leased")
        assert leased == 3
        expired = {s.labels["os"]: s.value for s in fams["dynvm_vms_expired"].samples
                   if s.name == "dynvm_vms_expired_total"}
        assert expired == {"centos": 1}
        avail = {s.labels["os"]: s.value for s in fams["dynvm_available_vms"].samples}
        assert avail["centos"] == int(get("/getavailablecount/centos").text)
        assert [s.value for s in fams["dynvm_host_up"].samples] == [1.0] * len(farm.pools)
        (holder,) = fams["dynvm_leader"].samples
        assert holder.value == 1 and holder.labels["instance"]
        assert fams["dynvm_requests_in_flight"].samples[0].value == 0
        builds = {s.labels["os"]: s.value for s in fams["dynvm_build_seconds"].samples
                  if s.name == "dynvm_build_seconds_count"}
        assert builds == {"centos": 6}

        # Every series the Grafana dashboard in docs/ plots is one dynvm exports.
        text = get("/metrics").text
        grafana = (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
        used = set(re.findall(r"dynvm_[a-z_]+", grafana)) - {"dynvm_xenapi_errors_total"}
        assert used and all(name in text for name in used), sorted(n for n in used
                                                                   if n not in text)
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "metrics"], input=get("/metrics").content,
                                   capture_output=True, timeout=60)
            assert check.returncode == 0, check.stdout + check.stderr
        get("/releaseservers/obsa?count=3")
    if not promtool:
        pytest.skip("promtool not installed (apt-get install prometheus): gauges checked, "
                    "exposition format not")


def test_one_request_id_end_to_end(tmp_path: Path, farm, clean_farm) -> None:
    ini = write_ini(tmp_path, farm)
    log = tmp_path / "serve.log"
    rid = "ci-job-42-build-7"
    with served(ini, workers=2, log=log) as (base, _):
        r = requests.get(base + "/getservers/trail?os=centos&count=2",
                         headers={"X-Request-Id": rid}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.headers["X-Dynvm-Request-Id"] == rid
        reqs = requests.get(base + "/ui/api/requests", timeout=30).json()
        (record,) = [x for x in reqs["recent"] if x["name"] == "trail"]
        assert record["id"] == rid
        docs = requests.get(base + "/ui/api/history?name=trail", timeout=30).json()["docs"]
        assert sorted(d["name"] for d in docs) == ["trail1", "trail2"]
        assert {d["request_id"] for d in docs} == {rid}
        # Without a header, the id dynvm makes up is used the same way.
        r2 = requests.get(base + "/getservers/trail2x?os=centos", timeout=120)
        made = r2.headers["X-Dynvm-Request-Id"]
        reqs = requests.get(base + "/ui/api/requests", timeout=30).json()
        assert [x["id"] for x in reqs["recent"] if x["name"] == "trail2x"] == [made]
        requests.get(base + "/releaseservers/trail?count=2", timeout=60)
        requests.get(base + "/releaseservers/trail2x", timeout=60)
    lines = [ln for ln in log.read_text().splitlines() if rid in ln]
    assert any("request_id=" + rid in ln and "/getservers/trail" in ln for ln in lines), lines
    assert any("getservers trail: 2 centos VM(s) asked" in ln for ln in lines), lines
    assert sum("ready at" in ln for ln in lines) == 2, lines  # logged by the build threads
    assert all(ln[:4].isdigit() and ln[10] == "T" and ln[23] in "+-" for ln in lines), lines


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("dynvm.test", logging.INFO, __file__, 1, "built %s", ("x1",), None)
    with trace.bound("abc123"):
        trace.RequestIdFilter().filter(record)
    out = json.loads(JsonFormatter().format(record))
    assert out["request_id"] == "abc123" and out["message"] == "built x1"
    assert out["time"][10] == "T" and out["time"][23] in "+-"
    access = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(r)s",
                               ({"r": "GET /", "{x-dynvm-request-id}o": "r9"},), None)
    trace.RequestIdFilter().filter(access)
    assert json.loads(JsonFormatter().format(access))["request_id"] == "r9"
    # An access line's parts are fields, numbers as numbers.
    atoms = {"h": "10.1.2.3", "m": "GET", "U": "/getservers/job", "q": "os=centos&token=***",
             "H": "HTTP/1.1", "s": "200", "B": "38", "M": "9120", "a": "curl/8.5", "f": "-",
             "r": "GET /getservers/job?os=centos&token=*** HTTP/1.1",
             "{x-dynvm-request-id}o": "ci-job-42"}
    line = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1,
                             '%(h)s "%(r)s" %(s)s', (atoms,), None)
    trace.RequestIdFilter().filter(line)
    fields = json.loads(JsonFormatter().format(line))
    assert {k: fields[k] for k in ("client", "method", "path", "query", "protocol", "status",
                                   "bytes", "duration_ms", "user_agent", "request_id")} == {
        "client": "10.1.2.3", "method": "GET", "path": "/getservers/job",
        "query": "os=centos&token=***", "protocol": "HTTP/1.1", "status": 200, "bytes": 38,
        "duration_ms": 9120, "user_agent": "curl/8.5", "request_id": "ci-job-42"}
    assert "referer" not in fields and fields["message"].startswith("10.1.2.3 ")
    cfg = dict_config("json")
    assert cfg["formatters"]["dynvm"]["()"].endswith("JsonFormatter")
    with pytest.raises(ValueError):
        dict_config("xml")
