"""What the simulator implements, as tools/sim_coverage.py counts it, and what
it answers for everything else: XAPI's answer to a message it does not know."""

from __future__ import annotations

import importlib.util
import json
import xmlrpc.client
from types import ModuleType
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm
from tests.support.shared import REPO, XENAPI_JSON

from .conftest import raw_call, raw_login


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_coverage", REPO / "tools" / "sim_coverage.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def coverage(tool: ModuleType) -> dict[str, tuple[list[str], list[str]]]:
    return tool.coverage(tool.load_messages())


def test_trimmed_message_lists_are_xenapi_json_s(tool: ModuleType) -> None:
    if not XENAPI_JSON.exists():
        pytest.skip("shared/docs/xenapi.json not present")
    assert tool.load_messages() == tool.trim(json.loads(XENAPI_JSON.read_text()))


def test_the_readme_states_the_figure(tool: ModuleType, coverage: Any) -> None:
    readme = (REPO / "README.md").read_text()
    assert tool.summary(coverage) in " ".join(readme.split())


def test_counts_follow_the_handler_table(tool: ModuleType, coverage: Any) -> None:
    done, total = tool.figure(coverage)
    assert 0 < done < total
    vm_done, vm_missing = coverage["VM"]
    for message in ("suspend", "resume", "get_allowed_VBD_devices", "get_allowed_VIF_devices",
                    "get_record", "set_name_label", "snapshot", "revert"):
        assert message in vm_done
    assert "checkpoint" in vm_missing
    assert {"plug", "eject"} <= set(coverage["VBD"][0])
    assert {"plug", "unplug"} <= set(coverage["VIF"][0])
    out = tool.report(coverage, missing=True)
    assert "not implemented: " in out and out.endswith("of these classes.")


def test_unknown_and_unmodelled_messages_answer_as_xapi(x: Any, farm: Farm) -> None:
    vm = x.VM.get_all()[0]
    for call, name in ((x.VM.frobnicate, "VM.frobnicate"), (x.Async.VM.frobnicate, "VM.frobnicate"),
                       (x.VM.checkpoint, "VM.checkpoint"), (x.Async.VM.checkpoint, "VM.checkpoint")):
        with pytest.raises(XenAPI.Failure) as exc:
            call(vm, "snap")
        assert exc.value.details == ["MESSAGE_METHOD_UNKNOWN", name]
    # As in xapi's dispatcher, the name is judged before the session and the arguments.
    url = farm.pools[0].master.url
    assert raw_call(url, "VM.checkpoint", "OpaqueRef:nobody")["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN", "VM.checkpoint"]
    assert raw_call(url, "VM_checkpoint")["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN", "VM_checkpoint"]


def test_every_message_not_implemented_answers_unknown(farm: Farm, coverage: Any) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    with xmlrpc.client.ServerProxy(url) as proxy:
        for cls, (_, missing) in coverage.items():
            for message in missing:
                answer = getattr(proxy, f"{cls}.{message}")(ref)
                assert answer == {"Status": "Failure",
                                  "ErrorDescription": ["MESSAGE_METHOD_UNKNOWN", f"{cls}.{message}"]}
