"""The access logger computes only the atoms dynvm's formats use: every one of them."""

from __future__ import annotations

import datetime
import logging
import re

from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from dynvm.api.v1.redact import AccessLogger
from dynvm.core.services import ACCESS_ATOM
from dynvm.runtime.logs import ACCESS_FIELDS, ACCESS_FORMAT, JsonFormatter, access_fields


class _Resp:
    status = "201 CREATED"
    sent = 17
    headers = [("Content-Type", "application/json"), ("X-Dynvm-Request-Id", "abc123")]


class _Req:
    headers = [("HOST", "example")]


ENVIRON = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "GET",
           "RAW_URI": "/getavailablecount/centos?token=s3cret&x=1", "PATH_INFO": "/getavailablecount/centos",
           "QUERY_STRING": "token=s3cret&x=1", "SERVER_PROTOCOL": "HTTP/1.1",
           "HTTP_USER_AGENT": "jenkins", "HTTP_REFERER": "http://ci/?token=other"}


def _atoms() -> SafeAtoms:
    logger = AccessLogger(Config())
    return SafeAtoms(logger.atoms(_Resp(), _Req(), ENVIRON, datetime.timedelta(microseconds=4_321)))


def test_the_text_line_has_every_atom_it_names_and_no_secret() -> None:
    atoms = _atoms()
    for name in re.findall(r"%\((.*?)\)s", ACCESS_FORMAT):
        assert atoms[name] != "-", name
    line = ACCESS_FORMAT % atoms
    assert line == ('10.1.2.3 "GET /getavailablecount/centos?token=***&x=1 HTTP/1.1" 201 17 4ms '
                    '"jenkins" request_id=abc123')
    assert "s3cret" not in line


def test_the_json_line_has_every_field() -> None:
    atoms = _atoms()
    fields = access_fields(atoms)
    assert set(fields) == set(ACCESS_FIELDS)
    assert fields["query"] == "token=***&x=1" and fields["referer"] == "http://ci/?token=***"
    assert fields["status"] == 201 and fields["bytes"] == 17 and fields["duration_ms"] == 4
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, ACCESS_FORMAT,
                               (), None)
    record.args = atoms
    assert '"path": "/getavailablecount/centos"' in JsonFormatter().format(record)
    assert atoms[ACCESS_ATOM] == "abc123"
