"""A duration as a person reads it, in its two largest units ("2d 3h", "1h 59m", "4m 10s"):
the dashboard and the client commands show ages and time left alike."""

from __future__ import annotations


def span(secs: float | None, unknown: str = "-") -> str:
    """`secs` in its two largest units, negative with a leading "-"; `unknown` if None."""
    if not isinstance(secs, int | float):  # None, or missing from an older document
        return unknown
    neg, s = secs < 0, int(abs(secs))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    text = f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {sec}s" if m else f"{sec}s"
    return f"-{text}" if neg else text
