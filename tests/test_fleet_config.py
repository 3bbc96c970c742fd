"""The fleet directory: `[fleet] path=`, one `<name>.ini` per VM, every problem with its place."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.config import ConfigError, load_config, load_fleet

INI = """\
[store]
sqlite.path={tmp}/dynvm.sqlite
[fleet]
path=fleet
[xenhost1]
host.name=https://10.0.0.1
host.user=root
host.password=pw
host.storage.name=Local storage
centos.template=tmpl-cnt7.7
centos.vcpus=4
centos.memory=8
[xenhost2]
host.name=https://10.0.0.2
host.user=root
host.password=pw
host.storage.name=Local storage
host.labels=perf
centos.template=tmpl-cnt7.7
debian.template=tmpl-deb12
"""


def farm_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    """The INI file above and a fleet directory of `files` (relative path -> text) beside it."""
    ini = tmp_path / "dynvm.ini"
    ini.write_text(INI.format(tmp=tmp_path))
    for rel, text in files.items():
        path = tmp_path / "fleet" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "fleet").mkdir(exist_ok=True)
    return ini


def problems(ini: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_fleet(load_config(ini))
    return err.value.problems


def test_a_fleet_directory_is_read_with_defaults_from_its_host(tmp_path: Path) -> None:
    ini = farm_dir(tmp_path, {
        "xenhost1/db1.ini": "[vm]\nos=centos\nhost=h1-a\ngroup=db\nowner=team-db\n",
        "xenhost2/db2.ini": "[vm]\nos=centos\nvcpus=2\nmemory=3\ndisk=20\ngroup=db\n"
                            "autostart=false\nrecreate=true\npools=p2,p1,p2\nlabels=x\n",
        "any/cache.ini": "[vm]\nos=debian\n",
        "README.md": "what runs where\n",
        ".git/HEAD": "ref: refs/heads/main\n",
    })
    cfg = load_config(ini)
    assert cfg.fleet_path == str(tmp_path / "fleet")
    fleet = load_fleet(cfg)
    assert fleet is not None
    assert sorted(fleet.vms) == ["cache", "db1", "db2"]
    db1, db2, cache = fleet.vms["db1"], fleet.vms["db2"], fleet.vms["cache"]
    # Sizes default to the folder's host's <os>.* (xenhost1: 4 vCPUs, 8 GiB; disk default 35).
    assert (db1.host_ref, db1.member, db1.vcpus, db1.memory_gib, db1.disk_gib) == \
        (1, "h1-a", 4, 8, 35)
    assert (db1.declared, db1.owner, db1.autostart, db1.recreate) == \
        ("xenhost1/h1-a", "team-db", True, False)
    assert (db2.vcpus, db2.memory_gib, db2.disk_gib, db2.autostart, db2.recreate) == \
        (2, 3, 20, False, True)
    # In the order written (the seed's order in the documents), each once.
    assert db2.pools == ("p2", "p1") and db2.labels == frozenset({"x"})
    assert (cache.host_ref, cache.declared, cache.vcpus) == (None, "any", 8)
    assert [v.name for v in fleet.groups()["db"]] == ["db1", "db2"]


def test_every_problem_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    ini = farm_dir(tmp_path, {
        "xenhost1/web.ini": "[vm]\nos=debian\nvcpus=0\nautostart=maybe\ncolour=blue\n",
        "xenhost2/web.ini": "[vm]\nos=centos\n",
        "xenhost7/lost.ini": "[vm]\nos=centos\n",
        "hosts/x.ini": "[vm]\nos=centos\n",
        "any/pinned.ini": "[vm]\nos=centos\nhost=h1-a\n",
        "any/nosection.ini": "os=centos\n",
        "any/two.ini": "[vm]\nos=centos\n[extra]\nos=centos\n",
        "any/bad name!.ini": "[vm]\nos=centos\n",
        "any/cut.ini": "[vm]\nos=centos\nmemory=1",
        "any/noos.ini": "[vm]\nvcpus=2\n",
        "xenhost1/a.ini": "[vm]\nos=centos\ngroup=g\nhost=m1\n",
        "xenhost1/b.ini": "[vm]\nos=centos\ngroup=g\nhost=m1\n",
        "top.ini": "[vm]\nos=centos\n",
    })
    found = problems(ini)
    expect = [
        f"{root}/xenhost1/web.ini:2: [vm] os: xenhost1 has no debian.template",
        f"{root}/xenhost1/web.ini:3: [vm] vcpus: must be a positive number",
        f"{root}/xenhost1/web.ini:4: [vm] autostart: must be true or false",
        f"{root}/xenhost1/web.ini:5: [vm] colour: unknown key",
        f"{root}/xenhost2/web.ini: web is also declared in {root}/xenhost1/web.ini",
        f"{root}/xenhost7: no [xenhost7] in the configuration",
        f"{root}/hosts: unknown folder",
        f"{root}/any/pinned.ini:3: [vm] host: host= pins a VM to a member host",
        f"{root}/any/nosection.ini:1: text before the first [section]",
        f"{root}/any/two.ini:3: [extra] bad section name",
        f"{root}/any/bad name!.ini: bad VM name",
        f"{root}/any/cut.ini:3: [vm] memory: the last line has no newline",
        f"{root}/any/noos.ini:1: [vm] missing required key os",
        f"{root}/xenhost1/b.ini:1: group g: b and a are both pinned to xenhost1/m1",
        f"{root}/top.ini: a VM file belongs in a host folder",
    ]
    for line in expect:
        assert any(p.startswith(line) for p in found), (line, found)
    assert len(found) == len(expect), found


def test_a_missing_directory_and_a_section_without_path_are_refused(tmp_path: Path) -> None:
    ini = farm_dir(tmp_path, {})
    (tmp_path / "fleet").rmdir()
    assert problems(ini) == [f"{tmp_path / 'fleet'}: the fleet directory ([fleet] path) is "
                             f"not a directory"]
    ini.write_text(INI.format(tmp=tmp_path).replace("path=fleet\n", ""))
    with pytest.raises(ConfigError, match=r"dynvm.ini:3: \[fleet\] missing required key path"):
        load_config(ini)


def test_no_fleet_section_means_no_fleet(tmp_path: Path) -> None:
    ini = farm_dir(tmp_path, {})
    ini.write_text(INI.format(tmp=tmp_path).replace("[fleet]\npath=fleet\n", ""))
    assert load_fleet(load_config(ini)) is None


def test_check_config_validates_the_fleet_with_the_ini(tmp_path: Path) -> None:
    ini = farm_dir(tmp_path, {"xenhost1/db1.ini": "[vm]\nos=centos\ngroup=db\n",
                              "any/cache.ini": "[vm]\nos=debian\n",
                              "xenhost2/notes.txt": "x\n"})
    ok = CliRunner().invoke(main, ["check-config", "--offline", str(ini)])
    assert ok.exit_code == 0, ok.output
    assert "fleet: 2 VM(s) in " in ok.output
    assert "xenhost1: db1" in ok.output and "any: cache" in ok.output
    assert "group db: db1" in ok.output
    assert "notes.txt: not a <name>.ini file: ignored" in ok.output
    (tmp_path / "fleet" / "any" / "cache.ini").write_text("[vm]\nos=windows\n")
    bad = CliRunner().invoke(main, ["check-config", "--offline", str(ini)])
    assert bad.exit_code == 2  # a configuration problem
    assert f"{tmp_path}/fleet/any/cache.ini:2: [vm] os: no host serves windows" in bad.output


def test_the_readme_example_is_a_valid_fleet_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("`xenhost1/db1.ini`", 1)[1].split("```ini\n", 1)[1].split("```")[0]
    ini = farm_dir(tmp_path, {"xenhost1/db1.ini": example,
                              "xenhost2/labelled.ini": "[vm]\nos=centos\nlabels=perf\n"})
    fleet = load_fleet(load_config(ini))
    assert fleet is not None
    db1 = fleet.vms["db1"]
    assert (db1.os, db1.vcpus, db1.memory_gib, db1.disk_gib, db1.member, db1.group) == \
        ("centos", 4, 8, 60, "xen1-a", "db")
    assert (db1.owner, db1.pools, db1.autostart, db1.recreate) == \
        ("team-db", ("qe-static",), True, False)
    assert fleet.warnings == (f"{tmp_path}/fleet/xenhost2/labelled.ini:3: [vm] labels: labels "
                              "choose hosts for VMs in any/ only: ignored here",)
