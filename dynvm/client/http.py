"""A small HTTP client for dynvm's v1 API, used by the `dynvm get/list/...` commands.

Where to connect: `--url`/`--token`, else `DYNVM_URL`/`DYNVM_TOKEN`, else the
`[client]` section of `$DYNVM_CLIENT_CONFIG` (default `~/.config/dynvm/client.ini`).
Reads and deletes are retried on connection errors, timeouts and 502/503/504
with a short backoff; a POST never is (it could be applied twice).
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import requests

# `requests` (and urllib3) is imported by the first Client, not with this module: every
# `dynvm` command imports the CLI that registers the client commands, and `dynvm serve`,
# whose master and workers never use it, spent a quarter of its start importing it.

DEFAULT_CONFIG = Path("~/.config/dynvm/client.ini")
RETRY_STATUS = frozenset({502, 503, 504})


class ClientError(Exception):
    """Anything that stops a command; `exit_code` says which kind for scripts."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.body = message, status, body or {}


class NetworkError(ClientError):
    exit_code = 3


class RequestRejected(ClientError):  # 4xx
    exit_code = 4


class ServerError(ClientError):  # 5xx
    exit_code = 5


class ConfigMissing(ClientError):
    exit_code = 2


@dataclass(frozen=True)
class Settings:
    url: str
    token: str


def settings(url: str | None = None, token: str | None = None,
             env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    path = Path(env.get("DYNVM_CLIENT_CONFIG") or DEFAULT_CONFIG).expanduser()
    file: dict[str, str] = {}
    if path.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
        if parser.has_section("client"):
            file = dict(parser["client"])
    url = url or env.get("DYNVM_URL") or file.get("url")
    token = token or env.get("DYNVM_TOKEN") or file.get("token")
    if not url:
        raise ConfigMissing(f"no dynvm URL: pass --url, set DYNVM_URL, or write url= in "
                            f"[client] of {path}")
    if not token:
        raise ConfigMissing(f"no token: pass --token, set DYNVM_TOKEN, or write token= in "
                            f"[client] of {path} (an operator makes one: dynvm token create)")
    return Settings(url.rstrip("/"), token)


class Client:
    """The v1 API over HTTP; every method answers the decoded JSON body."""

    def __init__(self, s: Settings, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5, sleep: Callable[[float], None] | None = None) -> None:
        self.base = s.url + "/api/v1"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # Looked up now, not when this module was imported: a test that swaps time.sleep
        # out (for the client the CLI builds itself) is heard.
        self._sleep = sleep or time.sleep
        import requests

        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {s.token}",
                                  "Accept": "application/json",
                                  "User-Agent": "dynvm-client/1"})

    def call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None, timeout: float | None = None
             ) -> dict[str, Any]:
        import requests

        attempts = 1 if method == "POST" else max(1, self.retries)
        url = self.base + path
        params = {k: v for k, v in (params or {}).items() if v is not None}
        last: ClientError | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                resp = self.http.request(method, url, json=body, params=params,
                                         timeout=timeout or self.timeout)
            except requests.Timeout:
                last = NetworkError(f"{self.base} did not answer within "
                                    f"{timeout or self.timeout:g} s")
                continue
            except requests.ConnectionError as exc:
                last = NetworkError(f"cannot reach {self.base}: {_reason(exc)}")
                continue
            if resp.status_code in RETRY_STATUS and attempt + 1 < attempts:
                last = _error(resp)
                continue
            if resp.status_code >= 400:
                raise _error(resp)
            try:
                data = resp.json()
            except ValueError:
                raise ServerError(f"{method} {path}: the answer is not JSON "
                                  f"(status {resp.status_code})", resp.status_code) from None
            if not isinstance(data, dict):
                raise ServerError(f"{method} {path}: unexpected answer", resp.status_code)
            return data
        assert last is not None
        raise last

    # -- the API ---------------------------------------------------------------------------
    def create(self, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "/requests", body={k: v for k, v in fields.items()
                                                    if v is not None})

    def request(self, request_id: str, wait: float = 0) -> dict[str, Any]:
        return self.call("GET", f"/requests/{request_id}",
                         params={"wait": wait or None}, timeout=self.timeout + wait)

    def cancel(self, request_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/requests/{request_id}")

    def in_flight(self) -> list[dict[str, Any]]:
        return self.call("GET", "/requests")["requests"]

    def vms(self, **filters: Any) -> list[dict[str, Any]]:
        return self.call("GET", "/vms", params=filters)["vms"]

    def vm(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/vms/{quote(name, safe='')}")

    def release(self, name: str) -> dict[str, Any]:
        return self.call("DELETE", f"/vms/{name}")

    def extend(self, name: str, minutes: int) -> dict[str, Any]:
        return self.call("POST", f"/vms/{name}/extend", body={"minutes": minutes})

    def snapshots(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/vms/{quote(name, safe='')}/snapshots")

    def delete_snapshot(self, name: str, snapshot: str) -> dict[str, Any]:
        return self.call("DELETE", f"/vms/{quote(name, safe='')}/snapshots/"
                                   f"{quote(snapshot, safe='')}")

    def snapshot(self, name: str, snapshot: str | None) -> dict[str, Any]:
        body = {"name": snapshot} if snapshot else {}
        return self.call("POST", f"/vms/{quote(name, safe='')}/snapshots", body=body)

    def revert(self, name: str, snapshot: str | None) -> dict[str, Any]:
        body = {"snapshot": snapshot} if snapshot else {}
        return self.call("POST", f"/vms/{quote(name, safe='')}/revert", body=body)

    def capacity(self) -> list[dict[str, Any]]:
        return self.call("GET", "/capacity")["capacity"]

    def history(self, **filters: Any) -> dict[str, Any]:
        return self.call("GET", "/history", params=filters)

    def quota(self) -> dict[str, Any]:
        return self.call("GET", "/quota")

    def keys(self) -> list[dict[str, Any]]:
        return self.call("GET", "/keys")["keys"]

    def add_key(self, line: str) -> dict[str, Any]:
        return self.call("POST", "/keys", body={"key": line})

    def remove_key(self, key_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/keys/{quote(key_id, safe='')}")


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "timed out",
                 "No route to host"):
        if hint in text:
            return hint.lower()
    return text[:200]


def _error(resp: requests.Response) -> ClientError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = body.get("detail") or body.get("title") or resp.reason or "error"
    message = f"{resp.status_code} {resp.reason or ''}: {detail}".replace(" :", ":")
    cls = ServerError if resp.status_code >= 500 else RequestRejected
    return cls(message, resp.status_code, body)
