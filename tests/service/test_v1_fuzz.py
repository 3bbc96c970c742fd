"""The OpenAPI document is the contract: schemathesis holds a served dynvm to it, every check on.

dynvm is served for real (`dynvm serve`, gunicorn) on the simulator, and
schemathesis reads the document it serves, generates requests for every
route (its examples, boundary values and fuzzed input, valid and invalid) and
runs all its checks on every answer (`st run --checks all`, all four phases:
examples, coverage, fuzzing, stateful): no 5xx, status codes, content types,
headers and bodies as documented, valid input accepted and invalid input
refused, authentication not ignored. The fuzzing owner's quota is zero VMs,
so every request it sends is one dynvm must turn down: the farm must see no
XenAPI write at all. A VM of another owner exists meanwhile, so the routes
that look VMs up have something to (not) find. Failed authentications are
not rate limited here (`fail.limit` is huge): they are part of the fuzzing
(checks send requests without a token), and a limiter answering 429 to
everything would hide every route behind it. Time is bounded by the number
of examples, not by a clock.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
import schemathesis

from dynvm.api.v1.routes import OPERATIONS
from dynvm.config import load_config
from dynvm.core import tokens
from dynvm.sim import Farm
from dynvm.store.factory import open_store
from tests.service.conftest import FarmProbe, served, wait_until, write_ini

pytestmark = pytest.mark.served  # every test here talks to `dynvm serve`

EXTRA = """
[quota fuzz]
vms=0

[auth]
fail.limit=100000000
"""
WRITE_VERBS = ("clone", "copy", "provision", "start", "start_on", "destroy", "hard_shutdown",
               "clean_shutdown", "hard_reboot", "clean_reboot", "create", "migrate",
               "pool_migrate", "suspend", "resume", "pause", "unpause", "set_", "add_",
               "remove_")
# Per route and phase (fuzzing, stateful): what bounds the run's time, never a clock. The
# coverage phase adds its own boundary and wrong-method cases (some 600) whatever this is.
EXAMPLES = 10
# An SSH key line is checked beyond what a schema can say (its base64 blob must be a key
# of the type it declares): a line of the documented form may still be refused with 422
# naming it. Everything else about these routes is held as for the others.
KEYS_CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/(keys|requests)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def fuzz_farm() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=2, speed=200.0).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, fuzz_farm: Farm) -> Iterator[tuple[str, str]]:
    """A served dynvm holding the keeper's VM; yields its URL and the fuzzing token."""
    tmp = tmp_path_factory.mktemp("fuzz")
    ini = write_ini(tmp, fuzz_farm, extra=EXTRA)
    store = open_store(load_config(ini).store)
    keeper, _ = tokens.create(store, "keeper")
    secret, _ = tokens.create(store, "fuzz")
    store.close()
    h = {"Authorization": f"Bearer {keeper}"}
    with served(ini, workers=1, log=tmp / "serve.log") as (base, _):
        r = requests.post(base + "/api/v1/requests", json={"os": "centos", "name": "kept"},
                          headers=h, timeout=60)
        assert r.status_code == 202, r.text
        wait_until(lambda: requests.get(base + r.headers["Location"] + "?wait=5", headers=h,
                                        timeout=60).json()["state"] == "done",
                   timeout=120, what="the keeper's VM")
        assert xen_writes(fuzz_farm)  # the measure sees a build's writes, so it can fail
        try:
            yield base, secret
        finally:
            requests.delete(base + "/api/v1/vms/kept", headers=h, timeout=120)


@pytest.fixture(scope="module")
def contract(site):
    base, _ = site
    return schemathesis.openapi.from_url(base + "/api/v1/openapi.json")


def xen_writes(farm: Farm) -> dict[str, int]:
    out: dict[str, int] = {}
    for per_host in farm.call_counts().values():
        for method, n in per_host.items():
            verb = method.rsplit(".", 1)[-1]
            if any(verb == v or (v.endswith("_") and verb.startswith(v)) for v in WRITE_VERBS):
                out[method] = out.get(method, 0) + n
    return out


def test_the_document_covers_every_route(contract) -> None:
    labels = {result.ok().label for result in contract.get_all_operations()}
    # Every route the API declares is fuzzed (schemathesis leaves out the document itself).
    assert labels == {f"{o.method} {o.path}" for o in OPERATIONS
                      if not o.path.endswith("/openapi.json")}



def test_the_document_says_what_this_configuration_allows(site) -> None:
    base, secret = site
    h = {"Authorization": f"Bearer {secret}"}
    doc = requests.get(base + "/api/v1/openapi.json", timeout=30).json()
    schemas = doc["components"]["schemas"]
    assert schemas["ExtendIn"]["properties"]["minutes"]["maximum"] == 720  # vm.expiry.minutes
    assert "centos" in schemas["RequestIn"]["properties"]["os"]["enum"]
    body = doc["paths"]["/api/v1/requests"]["post"]
    assert "65536 bytes" in body["requestBody"]["description"] and "413" in body["responses"]
    # The server agrees: a whole number written 8.0 is 8, the extension cap is the document's.
    r = requests.post(base + "/api/v1/requests", json={"os": "centos", "count": 8.0}, headers=h,
                      timeout=30)
    assert r.status_code == 429 and r.json()["asked"] == 8, r.text  # judged, by quota (zero)
    r = requests.post(base + "/api/v1/vms/kept/extend", json={"minutes": 721}, headers=h,
                      timeout=30)
    assert r.status_code == 400, r.text
    r = requests.post(base + "/api/v1/vms/kept/extend", json={"minutes": 720.0}, headers=h,
                      timeout=30)
    assert r.status_code == 404, r.text  # valid; the keeper's VM is not the fuzzer's to see


def test_every_route_holds_its_document(site, fuzz_farm, tmp_path) -> None:
    """`st run --checks all`, every phase, a fixed seed and a bounded number of examples."""
    base, secret = site
    before = xen_writes(fuzz_farm)
    config = tmp_path / "schemathesis.toml"
    config.write_text(KEYS_CONFIG)
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
           base + "/api/v1/openapi.json",
           "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(EXAMPLES), "--seed", "20261207", "--workers", "1",
           "--request-timeout", "60", "--header", f"Authorization: Bearer {secret}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-15000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report[-3000:]
    assert int(generated.group(1)) >= 20 * len(OPERATIONS), report[-3000:]  # not trivially few
    assert xen_writes(fuzz_farm) == before  # nothing it sent built, changed or destroyed a VM
    assert [v["name_label"] for v in FarmProbe(fuzz_farm).vms_named("kept")] == ["kept"]
