"""Loading real xapi databases: every dump in shared/xapi-db must load faithfully."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from dynvm.sim import datamodel as dm
from dynvm.sim import sexpr as sx
from dynvm.sim.dbload import load_state_db, pool_summary, read_manifest, unprotect
from tests.support.shared import XAPI_DB as DB_DIR

if not (DB_DIR / "README.md").exists():
    pytest.skip("shared/xapi-db not present", allow_module_level=True)


def _readme_table() -> dict[str, dict[str, int]]:
    """The README's table of counts: file -> hosts, vms, running, templates."""
    rows = {}
    for line in (DB_DIR / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*(\S+\.xml)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\((\d+)\)\s*\|\s*(\d+)\s*\|", line)
        if m:
            rows[m.group(1)] = {
                "hosts": int(m.group(2)), "vms": int(m.group(3)),
                "running_vms": int(m.group(4)), "templates": int(m.group(5)),
            }
    return rows


README = _readme_table()
FILES = sorted(p.name for p in DB_DIR.glob("*.xml"))
OLD_DUMPS = ["state-db-one-host.xml", "single-host-krakout.xml", "cowleyPolicies.xml"]
_cache: dict[str, dm.Tables] = {}


def load(name: str) -> dm.Tables:
    if name not in _cache:
        _cache[name] = load_state_db(DB_DIR / name)
    return _cache[name]


def raw_rows(name: str, table: str) -> dict[str, dict[str, str]]:
    root = ET.parse(DB_DIR / name).getroot()
    return {r.get("ref", ""): dict(r.attrib) for t in root.iter("table")
            if t.get("name") == table for r in t.iter("row")}


def test_readme_lists_every_file():
    assert len(README) == 5
    assert set(README) == set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_counts_match_readme(name):
    summary = pool_summary(load(name))
    for key, expected in README[name].items():
        assert summary[key] == expected, (key, summary)


@pytest.mark.parametrize("name", FILES)
def test_every_record_is_complete_and_native(name):
    tables = load(name)
    assert set(tables) == set(dm.CLASSES)
    for cls, rows in tables.items():
        fields = dm.CLASSES[cls].fields
        for ref, rec in rows.items():
            assert ref.startswith("OpaqueRef:")
            assert set(rec) == set(fields), (cls, set(rec) ^ set(fields))
            for fname, value in rec.items():
                # Loading is lenient about unknown enum values, nothing else.
                assert dm.coercer(fields[fname].type, False)(value) == value, (cls, fname, value)


@pytest.mark.parametrize("name", FILES)
def test_row_counts_match_the_xml(name):
    tables = load(name)
    root = ET.parse(DB_DIR / name).getroot()
    for table in root.iter("table"):
        cls = table.get("name")
        assert len(tables[cls]) == len(list(table.iter("row"))), cls


def test_srs_of_tampa():
    assert pool_summary(load("TampaTwoHostPoolSelectioniSCSI.xml"))["srs"] == 10


def test_known_host_values():
    tables = load("TampaTwoHostPoolSelectioniSCSI.xml")
    host = tables["host"]["OpaqueRef:ab812a04-14b6-0c14-9ba6-c45729944b00"]
    assert host["name_label"] == "dt16"
    assert host["address"] == "10.80.227.166"
    assert host["cpu_info"]["cpu_count"] == "8"
    assert host["API_version_major"] == 2
    assert host["enabled"] is True
    # "%_" is two spaces: "CPU%_%_%_%_%_ X3450%_@" in the file.
    assert host["cpu_info"]["modelname"] == "Intel(R) Xeon(R) CPU" + " " * 11 + "X3450  @ 2.67GHz"
    assert len(host["host_CPUs"]) == 8
    pool = next(iter(tables["pool"].values()))
    assert tables["host"][pool["master"]]["name_label"] == "dt23"
    assert pool["name_label"] == "Pool"  # pool columns have no "__" namespace


def test_percent_n_and_known_template():
    tables = load("boston-db.xml")
    names = {vm["name_label"]: vm for vm in tables["VM"].values()}
    demo = [vm for vm in names.values() if "install Debian demo" in vm["name_description"]]
    assert demo and all(vm["name_description"].endswith("field.\n") for vm in demo)
    assert "%n" not in "".join(vm["name_description"] for vm in tables["VM"].values())


def test_double_quoted_values_and_backslashes():
    tables = load("state-db-one-host.xml")
    vm = next(v for v in tables["VM"].values() if v["name_label"] == "Kirkwood Server")
    assert vm["tags"] == ["Kirkwood", "Do not delete"]
    gm = tables["VM_guest_metrics"][vm["guest_metrics"]]
    assert gm["networks"] == {"0/ip": "10.80.238.31"}
    assert gm["os_version"]["name"].endswith("|C:\\Windows|\\Device\\Harddisk0\\Partition")
    assert gm["os_version"]["distro"] == "windows"


def test_escaped_double_quotes_in_provision_spec():
    tables = load("cowleyPolicies.xml")
    vm = next(v for v in tables["VM"].values() if v["name_label"] == "Oracle Enterprise Linux 5.1 (32-bit)")
    assert vm["other_config"]["disks"] == (
        '<provision><disk device="0" size="8589934592" sr="" bootable="true" type="system"/></provision>')
    assert vm["is_a_template"] and vm["is_default_template"]  # upgraded from other_config


def test_enum_and_int_columns():
    tables = load("TampaTwoHostPoolSelectioniSCSI.xml")
    states = {vm["power_state"] for vm in tables["VM"].values()}
    assert states <= set(dm.ENUMS["vm_power_state"]) and "Running" in states
    for vm in tables["VM"].values():
        assert isinstance(vm["memory_static_max"], int) and isinstance(vm["domid"], int)
        if vm["power_state"] == "Halted" and not vm["is_control_domain"]:
            assert vm["domid"] == -1


@pytest.mark.parametrize("name", OLD_DUMPS)
def test_old_dumps_lack_derived_columns_yet_vbds_are_rebuilt(name):
    raw_vms = raw_rows(name, "VM")
    assert all("VBDs" not in row for row in raw_vms.values())
    tables = load(name)
    for ref, vm in tables["VM"].items():
        expected = {r for r, vbd in tables["VBD"].items() if vbd["VM"] == ref}
        assert set(vm["VBDs"]) == expected
        assert len(vm["VBDs"]) == len(expected)
    assert any(vm["VBDs"] for vm in tables["VM"].values())
    for ref, sr in tables["SR"].items():
        assert set(sr["VDIs"]) == {r for r, vdi in tables["VDI"].items() if vdi["SR"] == ref}


@pytest.mark.parametrize("name", ["TampaTwoHostPoolSelectioniSCSI.xml", "boston-db.xml"])
def test_new_dumps_rebuilt_sets_agree_with_stored(name):
    tables = load(name)
    for ref, row in raw_rows(name, "VM").items():
        stored = set(sx.parse_sexpr(unprotect(row["VBDs"])))
        assert set(tables["VM"][ref]["VBDs"]) == stored
    for ref, row in raw_rows(name, "host").items():
        stored = set(sx.parse_sexpr(row["resident_VMs"]))
        assert set(tables["host"][ref]["resident_VMs"]) == stored


@pytest.mark.parametrize("name", FILES)
def test_resident_vms_include_control_domain(name):
    tables = load(name)
    doms0 = {r: vm for r, vm in tables["VM"].items() if vm["is_control_domain"]}
    if name == "single-host-krakout.xml":
        assert not doms0
        return
    assert doms0
    for ref, vm in doms0.items():
        assert vm["power_state"] == "Running"
        assert ref in tables["host"][vm["resident_on"]]["resident_VMs"]
    for host_ref, host in tables["host"].items():
        assert any(tables["VM"][v]["is_control_domain"] for v in host["resident_VMs"]), host_ref
        for v in host["resident_VMs"]:
            assert tables["VM"][v]["resident_on"] == host_ref


def test_old_host_cpus_rebuilt():
    tables = load("cowleyPolicies.xml")
    host_ref, host = next(iter(tables["host"].items()))
    assert "host_CPUs" not in next(iter(raw_rows("cowleyPolicies.xml", "host").values()))
    assert len(host["host_CPUs"]) == int(host["cpu_info"]["cpu_count"]) == 2
    assert all(tables["host_cpu"][c]["host"] == host_ref for c in host["host_CPUs"])


def test_missing_columns_get_defaults():
    raw = next(iter(raw_rows("state-db-one-host.xml", "VM").values()))
    assert "domain_type" not in raw and "has_vendor_device" not in raw
    for vm in load("state-db-one-host.xml")["VM"].values():
        assert vm["domain_type"] == "unspecified"
        assert vm["has_vendor_device"] is False
        assert vm["NVRAM"] == {}


def test_boston_running_vms_without_guest_metrics():
    tables = load("boston-db.xml")
    guests = [vm for vm in tables["VM"].values() if not vm["is_a_template"] and not vm["is_control_domain"]]
    assert len(guests) == 2
    for vm in guests:
        assert vm["power_state"] == "Running"
        assert vm["guest_metrics"] == dm.NULL_REF
        assert vm["resident_on"] in tables["host"]


def test_manifest():
    assert read_manifest(DB_DIR / "boston-db.xml")["schema_minor_vsn"] == "63"
    assert read_manifest(DB_DIR / "state-db-one-host.xml")["pool_conf"] == "master"


def test_largest_dump_loads():
    tables = load_state_db(DB_DIR / "cowleyPolicies.xml")
    assert tables


# ------------------------------------------------------------ synthetic input


SYNTHETIC = b"""<?xml version="1.0"?>\r
<database>
  <manifest><pair key="schema_major_vsn" value="5"/><pair key="schema_minor_vsn" value="66"/></manifest>
  <table name="host">
    <row ref="OpaqueRef:h1" name__label="big%.host%%" cpu_info="(('cpu_count' '4') (&quot;vendor&quot; &quot;Gen\\&quot;uine&quot;))" enabled="true" bogus_column="x"/>
  </table>
  <table name="VM">
    <row ref="OpaqueRef:v1" _ref="OpaqueRef:v1" name__label="a%tb%nc%rd" resident_on="OpaqueRef:h1" power_state="Running" tags="('it\\'s' &quot;two words&quot;)" VCPUs__utilisation="(('0' '0.25'))" memory__static_max="1073741824"/>
    <row _ref="OpaqueRef:v2" name__label="only%_underscore" VCPUs__max="notanumber" HVM__shadow_multiplier="4"/>
  </table>
  <table name="VM_metrics">
    <row ref="OpaqueRef:m1" VCPUs__utilisation="(('0' '0.25') ('1' '1'))" VCPUs__CPU="(('0' '3'))" VCPUs__flags="(('0' '(\\'a\\' \\'b\\')'))"/>
  </table>
  <table name="no_such_class"><row ref="OpaqueRef:x"/></table>
</database>
"""


def test_synthetic_dump_from_bytes():
    t = load_state_db(SYNTHETIC)
    host = t["host"]["OpaqueRef:h1"]
    assert host["name_label"] == "big host%"
    assert host["cpu_info"] == {"cpu_count": "4", "vendor": 'Gen"uine'}
    assert "bogus_column" not in host
    v1 = t["VM"]["OpaqueRef:v1"]
    assert v1["name_label"] == "a\tb\nc\rd"
    assert v1["tags"] == ["it's", "two words"]
    assert v1["memory_static_max"] == 1 << 30
    assert host["resident_VMs"] == ["OpaqueRef:v1"]
    v2 = t["VM"]["OpaqueRef:v2"]  # ref only in _ref
    assert v2["name_label"] == "only  underscore"
    assert v2["VCPUs_max"] == 0  # unparsable -> default
    assert v2["HVM_shadow_multiplier"] == 4.0
    assert "no_such_class" not in t
    assert all(not rows for cls, rows in t.items() if cls not in ("host", "VM", "VM_metrics"))


def test_synthetic_dump_from_str_and_path(tmp_path):
    assert load_state_db(SYNTHETIC.decode())["VM"]["OpaqueRef:v1"]["power_state"] == "Running"
    p = tmp_path / "state.db"
    p.write_bytes(SYNTHETIC)
    assert set(load_state_db(p)["VM"]) == {"OpaqueRef:v1", "OpaqueRef:v2"}
    assert load_state_db(str(p))["host"]["OpaqueRef:h1"]["enabled"] is True


def test_typed_maps():
    m = load_state_db(SYNTHETIC)["VM_metrics"]["OpaqueRef:m1"]
    assert m["VCPUs_utilisation"] == {"0": 0.25, "1": 1.0}
    assert all(isinstance(v, float) for v in m["VCPUs_utilisation"].values())
    assert m["VCPUs_CPU"] == {"0": 3}
    assert m["VCPUs_flags"] == {"0": ["a", "b"]}  # a set nested as a serialised string


def test_not_a_database():
    with pytest.raises(ValueError):
        load_state_db(b"<html/>")


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("plain", "plain"),
        ("a%_b", "a  b"),
        ("a%.b", "a b"),
        ("%n%t%r", "\n\t\r"),
        ("100%%", "100%"),
        ("%%_", "%_"),
        ("%_%_", "    "),
        ("odd%q", "odd%q"),
        ("trailing%", "trailing%"),
    ],
)
def test_unprotect(raw, expected):
    assert unprotect(raw) == expected
