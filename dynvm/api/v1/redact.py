"""Gunicorn's access log without secrets: a `token=` query parameter is masked."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN = re.compile(r"(?i)((?:^|[?&])token=)[^&\s\"]*")


def mask(text: str) -> str:
    return _TOKEN.sub(r"\1***", text)


class AccessLogger(Logger):
    """Masks the request line, the query string and the referer before they are logged."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = mask(atoms[key])
        return atoms
