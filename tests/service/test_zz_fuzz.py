"""Property-based fuzzing of every v1 route from its own OpenAPI document (schemathesis).

The service runs in-process on the simulator. The fuzzing owner's quota is
zero VMs, so every request it sends is one dynvm must refuse: no answer may be
a 5xx, every answer must match the document, and the farm must see no XenAPI
write at all. A VM of another owner exists meanwhile, so the routes that
look VMs up have something to (not) find.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dynvm.api import create_app
from dynvm.api.v1.routes import OPERATIONS
from dynvm.core import tokens
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from tests.service.conftest import FAST, FarmProbe, _release_everything, wait_until, write_ini

import schemathesis.checks as _c
_c.load_all_checks()
ALL = _c.CHECKS.get_all()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
WRITE_VERBS = ("clone", "copy", "provision", "start", "start_on", "destroy", "hard_shutdown",
               "clean_shutdown", "hard_reboot", "clean_reboot", "create", "migrate",
               "pool_migrate", "suspend", "resume", "pause", "unpause", "set_", "add_",
               "remove_")


@pytest.fixture(scope="module")
def fuzz_farm() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=2, speed=200.0).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, fuzz_farm: Farm):
    tmp = tmp_path_factory.mktemp("fuzz")
    svc = build_service(str(write_ini(tmp, fuzz_farm, extra="\n[quota fuzz]\nvms=0\n")),
                        timings=FAST)
    app = create_app(service=svc)
    other, _ = tokens.create(svc.ctx.store, "keeper")
    secret, _ = tokens.create(svc.ctx.store, "fuzz")
    c = app.test_client()
    h = {"Authorization": f"Bearer {other}"}
    r = c.post("/api/v1/requests", json={"os": "centos", "name": "kept"}, headers=h)
    assert r.status_code == 202, r.json
    wait_until(lambda: c.get(r.headers["Location"] + "?wait=5", headers=h).json["state"]
               == "done", timeout=60, what="the keeper's VM")
    assert xen_writes(fuzz_farm)  # the measure sees a build's writes, so it can fail
    try:
        yield app, secret
    finally:
        _release_everything(svc)
        svc.close()


def xen_writes(farm: Farm) -> dict[str, int]:
    out: dict[str, int] = {}
    for per_host in farm.call_counts().values():
        for method, n in per_host.items():
            verb = method.rsplit(".", 1)[-1]
            if any(verb == v or (v.endswith("_") and verb.startswith(v)) for v in WRITE_VERBS):
                out[method] = out.get(method, 0) + n
    return out


def operations(app) -> list:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_route_holds_its_document(fuzzed, fuzz_farm) -> None:
    app, secret = fuzzed
    ops = operations(app)
    # Every route the API declares is fuzzed (schemathesis leaves out the document itself).
    assert {op.label for op in ops} == {f"{o.method} {o.path}" for o in OPERATIONS
                                        if not o.path.endswith("/openapi.json")}
    headers = {"Authorization": f"Bearer {secret}"}
    fuzzed_calls: list[str] = []
    for op, mode in ((op, mode) for op in ops for mode in GenerationMode):
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            before = xen_writes(fuzz_farm)
            case.call_and_validate(headers=headers, checks=ALL)
            assert xen_writes(fuzz_farm) == before, f"{case.method} {case.formatted_path}"
            fuzzed_calls.append(case.method)
        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # a route without inputs has no bad ones
    assert len(fuzzed_calls) >= 10 * len(ops)  # bounded, but not trivially small


def test_the_keepers_vm_survived(fuzzed, fuzz_farm) -> None:
    assert [v["name_label"] for v in FarmProbe(fuzz_farm).vms_named("kept")] == ["kept"]
