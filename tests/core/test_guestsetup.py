"""How a VM gets its owner's setup: a config drive from a cloud-init template,
SSH with the template's credentials, or a refusal that says why."""

from __future__ import annotations

import yaml

from dynvm.config import Config, parse_config
from dynvm.core.guestsetup import DRIVE, SSH, GuestSetup, first_boot, refusal, warm_ok, way
from dynvm.core.store import OwnerKey

KEY = OwnerKey("team-a", "ssh-ed25519 AAAAkey a@b", "SHA256:k", 1.0)
HOST = """[xenhost{n}]
host.name=10.0.0.{n}
host.user=root
host.password=pw
host.storage.name=Local storage
centos.template=tmpl-cnt7.7
windows.template=tmpl-win
{extra}"""


def config(common: str = "", *hosts: str) -> Config:
    text = f"[common]\n{common}\n" + "".join(
        HOST.format(n=i + 1, extra=extra) for i, extra in enumerate(hosts or ("",)))
    return parse_config(text, source="t.ini", env={})


def test_the_way_follows_the_template_and_the_credentials() -> None:
    keys = GuestSetup.of([KEY])
    plain, creds = config(), config("vm.linux.username=ci\nvm.linux.password=pw")
    drive = config("", "centos.cloudinit=true\nwindows.cloudinit=true\n")
    centos = lambda c: c.hosts[1].os["centos"]  # noqa: E731
    windows = lambda c: c.hosts[1].os["windows"]  # noqa: E731
    assert way(drive, centos(drive), keys) == DRIVE and way(drive, windows(drive), keys) == DRIVE
    assert way(creds, centos(creds), keys) == SSH
    assert way(creds, windows(creds), keys) is None  # a Windows rename needs a reboot
    assert way(plain, centos(plain), keys) is None
    with_doc = GuestSetup.of([KEY], user_data={"packages": ["git"]})
    assert way(creds, centos(creds), with_doc) is None  # a cloud-config needs a first boot
    assert warm_ok(creds, "centos", keys) and not warm_ok(creds, "centos", with_doc)
    assert not warm_ok(creds, "windows", keys) and not warm_ok(plain, "centos", keys)
    assert warm_ok(plain, "centos", None) and warm_ok(plain, "centos", GuestSetup())


def test_a_refusal_names_the_host_and_what_to_configure() -> None:
    mixed = config("", "centos.cloudinit=true\n", "")
    assert refusal(mixed, "centos", GuestSetup()) is None  # nothing asked
    why = refusal(mixed, "centos", GuestSetup.of([KEY]))
    assert why is not None and "xenhost2's centos template" in why and "centos.cloudinit" in why
    doc = refusal(config("vm.linux.username=ci\nvm.linux.password=pw"), "centos",
                  GuestSetup(user_data={}))
    assert doc is not None and doc.startswith("user_data needs a template that runs cloud-init")
    assert refusal(config("", "centos.cloudinit=true\n"), "centos", GuestSetup.of([KEY])) is None


def test_every_cold_build_of_a_cloud_init_template_gets_a_drive() -> None:
    cfg = config("vm.linux.username=root\nvm.linux.password=pw\nvm.password.login=false",
                 "centos.cloudinit=true\n")
    spec = cfg.hosts[1].os["centos"]
    bare = first_boot(cfg, spec, None, "job-1")
    assert bare is not None and yaml.safe_load(bare.user_data) == {"hostname": "job-1"}
    keyed = first_boot(cfg, spec, GuestSetup.of([KEY, KEY]), "job-1")
    assert keyed is not None and yaml.safe_load(keyed.user_data) == {
        "ssh_authorized_keys": [KEY.line], "disable_root": False, "hostname": "job-1",
        "ssh_pwauth": False}
    assert first_boot(config(), config().hosts[1].os["centos"], GuestSetup.of([KEY]), "x") is None


def test_hostnames_are_numbered_like_names() -> None:
    setup = GuestSetup(hostname="web.ci.example")
    assert setup.hostname_of("job1", 1) == "web1.ci.example"
    assert setup.hostname_of("job1") == "web.ci.example"
    assert GuestSetup().hostname_of("Job_1") == "job-1"
    assert "AAAA" not in repr(GuestSetup.of([KEY]))
