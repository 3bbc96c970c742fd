"""Times as a person types and reads them in the client commands: `2h`, `3d` or an ISO
date for `--since`; "1h 59m" for a VM's time left."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import click

from dynvm.core.durations import span

__all__ = ["Moment", "span", "when"]

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Moment(click.ParamType):
    """A point in time: `2h`, `3d`, `90m`, `1w` ago, an ISO date or date and time (UTC
    unless it names its zone), or epoch seconds; converted to epoch seconds."""

    name = "TIME"

    def __init__(self, now: Any = time.time) -> None:
        self.now = now

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        if m := AGO.match(text):
            return float(self.now()) - float(m.group(1)) * UNITS[m.group(2)]
        try:
            return float(text) if re.fullmatch(r"\d{9,11}(\.\d+)?", text) else _iso(text)
        except ValueError:
            self.fail(f"{text!r} is not a time: give 2h, 3d, 90m, 1w (ago), an ISO date "
                      f"such as 2026-12-01 or 2026-12-01T08:00, or epoch seconds", param, ctx)


def _iso(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
