"""The master's local socket: what xapi serves in dom0 at /var/lib/xcp/xapi,
where root logs in without a password (tools such as xenserver_facts rely on it)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import fast_timing


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # XenAPI's local transport spells the path with "_" for "/": no "_" in it.
    path = Path("/tmp") / f"dynvmsim{uuid.uuid4().hex}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_socket_serves_the_master_and_trusts_root(socket_dir: Path) -> None:
    sock = socket_dir / "xapi"
    with Farm.generate(pools=1, hosts=2, timing=fast_timing()) as farm:
        farm.serve_local_socket(str(sock))
        local = XenAPI.Session("http://" + str(sock).replace("/", "_") + "/",
                               transport=XenAPI.UDSTransport())
        local.xenapi.login_with_password("", "")
        master = farm.pools[0].master
        assert local.xenapi.session.get_this_host(local.handle) == master.ref
        assert len(local.xenapi.host.get_all()) == 2
        # Over the network the same empty login is refused.
        remote = XenAPI.Session(master.url)
        with pytest.raises(XenAPI.Failure) as exc:
            remote.xenapi.login_with_password("", "")
        assert exc.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
        local.xenapi.session.logout()
    assert not sock.exists()
