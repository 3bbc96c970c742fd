"""Request bodies: 64 KiB at most (refused before they are read), bounded nesting, each key once.

dynvm is served for real (`dynvm serve`, gunicorn) on the simulator: a body's
size limit is gunicorn's and Flask's business together, so it is tested on the
wire, with raw sockets where a client library would hide what is sent.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from dynvm.api.jsonbody import MAX_BODY_BYTES
from dynvm.config import load_config
from dynvm.core import tokens
from dynvm.sim import Farm
from dynvm.store.factory import open_store
from tests.service.conftest import FarmProbe, served, write_ini

pytestmark = pytest.mark.served  # every test here talks to `dynvm serve`

PROBLEM = "application/problem+json"
QUOTA = "\n[quota fuzz]\nvms=0\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory, farm: Farm) -> Iterator[tuple[str, dict[str, str]]]:
    """A served dynvm, and the header of a token whose owner may build nothing (quota 0)."""
    tmp = tmp_path_factory.mktemp("bodies")
    ini = write_ini(tmp, farm, extra=QUOTA)
    store = open_store(load_config(ini).store)
    secret, _ = tokens.create(store, "fuzz")
    store.close()
    with served(ini, workers=1, log=tmp / "serve.log") as (base, _):
        yield base, {"Authorization": f"Bearer {secret}"}


def _raw(base: str, head: str, body_parts: list[bytes], timeout: float = 30.0) -> str:
    """Send `head` and the parts of a body on one connection; the status line answered."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
        s.sendall(head.encode())
        for part in body_parts:
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: what it said is what counts
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def test_a_declared_32_mib_body_is_refused_before_it_is_sent(site) -> None:
    base, auth = site
    # Only 1 KiB of the 32 MiB announced is ever sent: a server that read the body
    # before deciding would wait for the rest and never answer.
    head = (f"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\n{_header(auth)}"
            f"Content-Type: application/json\r\nContent-Length: {32 * 2**20}\r\n\r\n")
    assert _raw(base, head, [b"{" + b" " * 1023]).startswith("HTTP/1.1 413")


def test_a_chunked_body_is_read_no_further_than_the_limit(site) -> None:
    base, auth = site
    head = (f"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\n{_header(auth)}"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 8192
    # 256 KiB in chunks and then nothing more (no last chunk): only a server that stops
    # at the limit answers at all.
    parts = [b'2\r\n{"\r\n'] + [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 32
    assert _raw(base, head, parts).startswith("HTTP/1.1 413")


def _header(auth: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in auth.items())


def test_the_limit_is_exact_and_answers_a_problem(site) -> None:
    base, auth = site
    pad = {"os": "centos", "count": 1, "name": "x"}
    text = json.dumps(pad)
    at_limit = text[:-1] + " " * (MAX_BODY_BYTES - len(text)) + "}"
    assert len(at_limit) == MAX_BODY_BYTES
    r = requests.post(base + "/api/v1/requests", data=at_limit, headers=auth, timeout=30)
    assert r.status_code == 429, r.text  # parsed and judged: the owner has no quota
    r = requests.post(base + "/api/v1/requests", data=at_limit + " ", headers=auth, timeout=30)
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"] == PROBLEM
    assert "65536 bytes (64 KiB)" in r.json()["detail"]


@pytest.mark.parametrize("body", [
    "[" * 30_000 + "]" * 30_000,
    '{"os": ' + "[" * 30_000 + "]" * 30_000 + "}",
    '{"os": "centos", "labels": ' + "{\"a\": " * 40 + "1" + "}" * 40 + "}",
])
def test_excessive_nesting_is_a_400_problem(site, body: str) -> None:
    base, auth = site
    r = requests.post(base + "/api/v1/requests", data=body, headers=auth, timeout=30)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == PROBLEM
    assert "levels deep" in r.json()["detail"]


def test_nesting_100_000_deep_is_over_the_size_limit(site) -> None:
    base, auth = site
    r = requests.post(base + "/api/v1/requests", data="[" * 100_000 + "]" * 100_000,
                      headers=auth, timeout=30)
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"] == PROBLEM


def test_a_key_given_twice_is_refused_not_the_last_one_taken(site, farm: Farm) -> None:
    base, auth = site
    probe = FarmProbe(farm)
    before = probe.state()
    r = requests.post(base + "/api/v1/requests", data='{"os": "centos", "count": 1, "count": 50}',
                      headers=auth, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "the key 'count' is given more than once in the body"
    assert probe.state() == before


def test_maintenance_bodies_follow_the_same_rules(site) -> None:
    base, _auth = site
    r = requests.post(base + "/maintenance/1", data="[" * 30_000 + "]" * 30_000, timeout=30)
    assert r.status_code == 400, r.text
    assert "levels deep" in r.json()["error"]
    r = requests.post(base + "/maintenance/1", data='{"execute": false, "execute": true}',
                      timeout=30)
    assert r.status_code == 400 and "more than once" in r.json()["error"], r.text
    r = requests.post(base + "/maintenance/1", data=b"{" + b" " * MAX_BODY_BYTES + b"}",
                      timeout=30)
    assert r.status_code == 413 and "64 KiB" in r.json()["error"], r.text
    r = requests.post(base + "/maintenance/1", timeout=120)  # no body: the default plan
    assert r.status_code in (200, 409), r.text
