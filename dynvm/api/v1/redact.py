"""Gunicorn's access log without secrets: a `token=` query parameter is masked.

Only the atoms dynvm's access formats use are computed (`ACCESS_FORMAT` and the
JSON line's `ACCESS_FIELDS`): gunicorn's own `atoms` copies every request
header, response header and WSGI environ entry into the record for each
request, a tenth of what a monitor's `/getavailablecount` costs.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

from dynvm.core.services import ACCESS_ATOM

_TOKEN = re.compile(r"(?i)((?:^|[?&])token=)[^&\s\"]*")
_RESPONSE_HEADER = ACCESS_ATOM[1:-2]  # "{x-dynvm-request-id}o" -> the header's name


def mask(text: str) -> str:
    return _TOKEN.sub(r"\1***", text)


class AccessLogger(Logger):
    """Masks the request line, the query string and the referer before they are logged."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        method = environ.get("REQUEST_METHOD")
        protocol = environ.get("SERVER_PROTOCOL")
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "r": f"{method} {environ.get('RAW_URI')} {protocol}",
            "s": status,
            "m": method,
            "U": environ.get("PATH_INFO"),
            "q": environ.get("QUERY_STRING"),
            "H": protocol,
            "b": str(sent) if sent is not None else "-",
            "B": sent,
            "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }
        for name, value in resp.headers:
            if name.lower() == _RESPONSE_HEADER:
                atoms[ACCESS_ATOM] = value
        for key in ("r", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = mask(atoms[key])
        return atoms
