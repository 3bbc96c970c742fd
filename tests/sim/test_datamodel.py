"""The simulator's datamodel: generated from xenapi.json, complete, and its coercion rules."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import xmlrpc.client

import pytest

from dynvm.sim import datamodel as dm
from dynvm.sim import sexpr as sx
from tests.support.shared import REPO, XENAPI_JSON


def _generator():
    spec = importlib.util.spec_from_file_location("gen_datamodel", REPO / "tools" / "gen_datamodel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def xenapi() -> list[dict]:
    if not XENAPI_JSON.exists():
        pytest.skip("shared/docs/xenapi.json not present")
    return json.loads(XENAPI_JSON.read_text())


def test_committed_json_matches_generator(xenapi, tmp_path):
    """datamodel.json must be exactly what the generator makes from xenapi.json."""
    out = tmp_path / "datamodel.json"
    assert _generator().main([str(XENAPI_JSON), "-o", str(out)]) == 0
    assert out.read_bytes() == (REPO / "dynvm" / "sim" / "datamodel.json").read_bytes()


def test_json_is_compact():
    assert (REPO / "dynvm" / "sim" / "datamodel.json").stat().st_size < 400_000


def test_every_class_and_message_of_xenapi_is_present(xenapi):
    """Exactly xenapi.json's classes and fields, plus the few fields XAPI gained since."""
    since = {(c, f) for c, f, *_ in _generator().FIELDS_SINCE_DESCRIPTION}
    assert since == {("VM_guest_metrics", "netbios_name")}
    assert set(dm.CLASSES) == {c["name"] for c in xenapi}
    for c in xenapi:
        spec = dm.CLASSES[c["name"]]
        assert set(spec.fields) == {f["name"] for f in c["fields"]} | {
            f for cls, f in since if cls == c["name"]}
        missing = {m["name"] for m in c["messages"]} - set(spec.messages)
        assert not missing, (c["name"], missing)


def test_vm_clone_signature():
    m = dm.CLASSES["VM"].messages["clone"]
    assert m.params == (("vm", "VM ref"), ("new_name", "string"))
    assert m.result == "VM ref"
    assert m.session and not m.implicit and m.has_async
    assert "VM_BAD_POWER_STATE" in m.errors
    assert len(m.errors) == len(set(m.errors))


def test_login_takes_no_session_and_four_params():
    m = dm.CLASSES["session"].messages["login_with_password"]
    assert [p[0] for p in m.params] == ["uname", "pwd", "version", "originator"]
    assert m.session is False
    assert m.min_params == 2
    assert not m.has_async
    assert dm.CLASSES["session"].messages["logout"].session is True


def test_host_messages():
    host = dm.CLASSES["host"].messages
    assert host["disable"].params == (("host", "host ref"),)
    assert host["evacuate"].min_params == 1 and len(host["evacuate"].params) == 3
    assert host["evacuate"].has_async


@pytest.mark.parametrize(
    "cls,msg,expected",
    [
        ("VM", "clone", True),
        ("VM", "start", True),
        ("VM", "pool_migrate", True),
        ("host", "evacuate", True),
        ("VM", "provision", True),
        ("VM", "create", True),
        ("VM", "destroy", True),
        ("VM", "get_record", False),
        ("VM", "get_all_records", False),
        ("VM", "get_by_name_label", False),
        ("VM", "get_power_state", False),
        ("VM", "set_name_label", False),
        ("VM", "add_to_other_config", False),
        ("VM", "add_tags", False),
        ("task", "cancel", False),
        ("session", "logout", False),
        ("event", "from", False),
    ],
)
def test_has_async_rule(cls, msg, expected):
    assert dm.CLASSES[cls].messages[msg].has_async is expected


def test_implicit_messages_are_explicit():
    for cname, spec in dm.CLASSES.items():
        if "get_record" not in spec.messages or "get_uuid" not in spec.messages:
            continue  # no generated accessors in XAPI either (event, message, sr_stat, ...)
        msgs = spec.messages
        for name in ("get_record", "get_all", "get_all_records", "get_all_records_where", "get_by_uuid"):
            assert name in msgs, (cname, name)
        if "name_label" in spec.fields and cname != "pool":
            assert msgs["get_by_name_label"].result == f"{cname} ref set"
        for f in spec.fields.values():
            getter = msgs[f"get_{f.name}"]
            assert getter.params == (("self", f"{cname} ref"),) and getter.result == f.type
            if f.qualifier != "RW":
                continue
            assert f"set_{f.name}" in msgs, (cname, f.name)
            if f.type.endswith(" map"):
                assert len(msgs[f"add_to_{f.name}"].params) == 3
                assert len(msgs[f"remove_from_{f.name}"].params) == 2
            elif f.type.endswith(" set"):
                assert f"add_{f.name}" in msgs and f"remove_{f.name}" in msgs


def test_classes_without_generated_accessors_stay_so():
    assert "get_uuid" not in dm.CLASSES["message"].messages
    assert "get_since" in dm.CLASSES["message"].messages
    assert "get_record" not in dm.CLASSES["event"].messages
    assert "get_by_name_label" not in dm.CLASSES["pool"].messages  # XAPI has none for pool


def test_vm_specific_implicit_messages():
    vm = dm.CLASSES["VM"].messages
    assert vm["add_to_other_config"].params == (
        ("self", "VM ref"), ("key", "string"), ("value", "string"))
    assert vm["remove_from_other_config"].params == (("self", "VM ref"), ("key", "string"))
    assert vm["get_all_records_where"].params == (("expr", "string"),)
    assert vm["create"].params == (("args", "VM record"),)
    assert "set_power_state" not in vm  # RO field


def test_enums():
    assert dm.ENUMS["vm_power_state"] == ("Halted", "Paused", "Running", "Suspended")
    assert "Disk" in dm.ENUMS["vbd_type"]


@pytest.mark.parametrize(
    "key,target",
    [
        (("VM", "VBDs"), ("VBD", "VM")),
        (("VM", "VIFs"), ("VIF", "VM")),
        (("VM", "consoles"), ("console", "VM")),
        (("VM", "snapshots"), ("VM", "snapshot_of")),
        (("VM", "children"), ("VM", "parent")),
        (("host", "resident_VMs"), ("VM", "resident_on")),
        (("host", "PIFs"), ("PIF", "host")),
        (("host", "PBDs"), ("PBD", "host")),
        (("host", "host_CPUs"), ("host_cpu", "host")),
        (("SR", "VDIs"), ("VDI", "SR")),
        (("SR", "PBDs"), ("PBD", "SR")),
        (("VDI", "VBDs"), ("VBD", "VDI")),
        (("network", "VIFs"), ("VIF", "network")),
        (("network", "PIFs"), ("PIF", "network")),
        (("task", "subtasks"), ("task", "subtask_of")),
    ],
)
def test_relations(key, target):
    assert dm.RELATIONS[key] == target


def test_relations_point_at_real_ref_fields():
    for (cls, set_field), (other, fk) in dm.RELATIONS.items():
        assert dm.CLASSES[cls].fields[set_field].type == f"{other} ref set"
        assert dm.CLASSES[other].fields[fk].type == f"{cls} ref"


def test_defaults():
    vm = dm.default_record("VM")
    assert set(vm) == set(dm.CLASSES["VM"].fields)
    assert vm["power_state"] == "Halted"
    assert vm["HVM_shadow_multiplier"] == 1.0 and isinstance(vm["HVM_shadow_multiplier"], float)
    assert vm["snapshot_of"] == dm.NULL_REF  # "Null" in xenapi.json
    assert vm["snapshot_time"] == dm.EPOCH
    assert vm["VBDs"] == [] and vm["other_config"] == {}
    assert dm.default_record("VIF")["ipv4_configuration_mode"] == "None"
    assert dm.default_record("network")["MTU"] == 1500


def test_default_records_have_fresh_containers():
    a, b = dm.default_record("VM"), dm.default_record("VM")
    a["other_config"]["k"] = "v"
    a["tags"].append("t")
    assert b["other_config"] == {} and b["tags"] == []
    declared = dm.CLASSES["host"].fields["virtual_hardware_platform_versions"].default
    h = dm.default_record("host")
    h["virtual_hardware_platform_versions"].append(9)
    assert dm.default_record("host")["virtual_hardware_platform_versions"] == declared == [0]


def test_defaults_are_native_for_their_types():
    for cname in dm.CLASSES:
        for name, value in dm.default_record(cname).items():
            ftype = dm.CLASSES[cname].fields[name].type
            assert dm.coerce(ftype, value) == value, (cname, name)


def test_coerce_scalars():
    assert dm.coerce("int", "1073741824") == 1073741824
    assert dm.coerce("int", 5) == 5
    assert dm.coerce("int", "-1") == -1
    with pytest.raises(ValueError):
        dm.coerce("int", "abc")
    assert dm.coerce("float", "1") == 1.0 and isinstance(dm.coerce("float", 1), float)
    assert dm.coerce("bool", "true") is True and dm.coerce("bool", False) is False
    with pytest.raises(ValueError):
        dm.coerce("bool", "maybe")
    assert dm.coerce("VM ref", "") == dm.NULL_REF


def test_coerce_enum_case_insensitive():
    assert dm.coerce("enum vm_power_state", "running") == "Running"
    assert dm.coerce("enum vbd_mode", "rw") == "RW"
    with pytest.raises(ValueError):
        dm.coerce("enum vm_power_state", "exploded")
    assert dm.coercer("enum vm_power_state", False)("exploded") == "exploded"
    assert dm.coerce("enum vm_operations set", ["CLONE", "start"]) == ["clone", "start"]


def test_coerce_datetime():
    assert dm.coerce("datetime", "20240131T12:34:56Z") == "20240131T12:34:56Z"
    assert dm.coerce("datetime", xmlrpc.client.DateTime("20240131T12:34:56Z")) == "20240131T12:34:56Z"
    assert dm.coerce("datetime", dt.datetime(2024, 1, 31, 12, 34, 56)) == "20240131T12:34:56Z"
    assert dm.coerce("datetime", "2024-01-31T12:34:56Z") == "20240131T12:34:56Z"


def test_coerce_maps_and_sets():
    assert dm.coerce("(int -> float) map", {0: "0.5", "1": 2}) == {"0": 0.5, "1": 2.0}
    assert dm.coerce("(string -> string) map", "(('a' 'b') ('c' ''))") == {"a": "b", "c": ""}
    assert dm.coerce("(int -> string set) map", "(('0' ('x' 'y')))") == {"0": ["x", "y"]}
    assert dm.coerce("(int -> string set) map", "(('0' '(\\'x\\' \\'y\\')'))") == {"0": ["x", "y"]}
    assert dm.coerce("string set", ("a", "b")) == ["a", "b"]
    assert dm.coerce("int set", "('0' '1')") == [0, 1]
    assert dm.coerce("VM ref set", "()") == []
    with pytest.raises(ValueError):
        dm.coerce("string set", 3)


def test_new_ref_is_unique_opaque_ref():
    a, b = dm.new_ref(), dm.new_ref()
    assert a.startswith("OpaqueRef:") and len(a) == len("OpaqueRef:") + 36 and a != b


class TestSexpr:
    def test_empty(self):
        assert sx.parse_sexpr("()") == []
        assert sx.parse_sexpr("( )") == []

    def test_set_both_quotes(self):
        assert sx.parse_sexpr("('a' \"b c\")") == ["a", "b c"]

    def test_nested_maps(self):
        text = "(('k' (('a' '1') ('b' '2'))) ('e' ()))"
        assert sx.parse_sexpr(text) == [["k", [["a", "1"], ["b", "2"]]], ["e", []]]

    def test_escapes(self):
        assert sx.parse_sexpr(r"('it\'s' 'back\\slash' 'q\"uote' 'a\xb')") == [
            "it's", "back\\slash", 'q"uote', "axb"]
        assert sx.parse_sexpr(r'("say \"hi\"" "it\'s")') == ['say "hi"', "it's"]

    def test_quote_of_other_kind_inside(self):
        assert sx.parse_sexpr("(\"it's\" 'say \"x\"')") == ["it's", 'say "x"']

    def test_bare_atoms_and_whitespace(self):
        assert sx.parse_sexpr(" ( struct\n( 'a'\t'b' ) ) ") == ["struct", ["a", "b"]]

    @pytest.mark.parametrize("bad", ["('a'", "('a' 'b", "'a' 'b'", "())", "", "('a\\"])
    def test_malformed(self, bad):
        with pytest.raises(sx.SExprError):
            sx.parse_sexpr(bad)

    def test_quote_round_trip(self):
        for s in ["plain", "it's", "back\\slash", 'dq"', ""]:
            assert sx.parse_sexpr("(" + sx.sexpr_quote(s) + ")") == [s]


def test_rebuild_derived_and_dangling_refs():
    t = dm.empty_tables()
    vm, vbd, vdi = dm.new_ref(), dm.new_ref(), dm.new_ref()
    t["VM"][vm] = dm.default_record("VM")
    t["VDI"][vdi] = dm.default_record("VDI")
    t["VBD"][vbd] = {**dm.default_record("VBD"), "VM": vm, "VDI": vdi}
    t["VM"][vm]["VBDs"] = ["OpaqueRef:stale"]
    dm.rebuild_derived(t)
    assert t["VM"][vm]["VBDs"] == [vbd]
    assert t["VDI"][vdi]["VBDs"] == [vbd]
    assert dm.dangling_refs(t) == []
    t["VBD"][vbd]["VDI"] = "OpaqueRef:gone"
    assert len(dm.dangling_refs(t)) == 1
