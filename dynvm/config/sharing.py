"""The sections that say how owners share the farm: [auth], [quota <owner>] / [quota],
and [queue].

They change more often than the farm's own sections (a new team, a new quota),
and each answers one question: who may call the legacy routes, how much each
owner may hold, and how long a request may wait for room.
"""

from __future__ import annotations

import re

from dynvm.config.model import AuthConfig, QueueConfig, QuotaLimits
from dynvm.config.sections import Problems, Section

QUOTA_SECTION = re.compile(r"quota(?:\s+(\S+))?")
AUTH_KEYS = ("legacy", "fail.limit", "fail.window.secs")
AUTH_LEGACY = ("open", "mutating", "all")
QUOTA_KEYS = ("vms", "vcpus", "memory_gib")
QUOTA_PRIORITY_KEY = "priority.max"
QUEUE_KEYS = ("max_wait_minutes", "max_wait_minutes.max", "legacy.wait.secs")
PRIORITY_MAX = 100  # the highest priority any owner may be given


def parse_access(sections: dict[str, Section], p: Problems
                  ) -> tuple[AuthConfig, dict[str, QuotaLimits], QuotaLimits]:
    """[auth] and the [quota <owner>] / [quota] sections."""
    auth = AuthConfig()
    if "auth" in sections:
        s = sections["auth"]
        s.only(AUTH_KEYS)
        legacy = (s.get_str("legacy", "open") or "open").lower()
        if legacy not in AUTH_LEGACY:
            p.error("auth", "legacy", f"must be one of {', '.join(AUTH_LEGACY)}")
            legacy = "open"
        auth = AuthConfig(legacy=legacy, fail_limit=s.get_int("fail.limit", auth.fail_limit),
                          fail_window_secs=s.get_int("fail.window.secs", auth.fail_window_secs))
    quotas: dict[str, QuotaLimits] = {}
    default = QuotaLimits()
    for name, s in sections.items():
        m = QUOTA_SECTION.fullmatch(name)
        if not m:
            continue
        s.only((*QUOTA_KEYS, QUOTA_PRIORITY_KEY))
        limits = QuotaLimits(**{k: (s.get_int(k, 0, minimum=0) if k in s.raw else None)
                                for k in QUOTA_KEYS},
                             priority_max=s.get_int(QUOTA_PRIORITY_KEY, 0, minimum=0,
                                                    maximum=PRIORITY_MAX))
        if m.group(1) is None:
            default = limits
        else:
            quotas[m.group(1)] = limits
    return auth, quotas, default


def parse_queue(s: Section) -> QueueConfig:
    """[queue]: a request's longest wait for room, by default and at most; a legacy
    getservers' wait by default."""
    s.only(QUEUE_KEYS)
    default = QueueConfig()
    cap = s.get_int("max_wait_minutes.max", default.max_wait_minutes_cap)
    wait = s.get_int("max_wait_minutes", min(default.max_wait_minutes, cap))
    if wait > cap:
        s.p.error(s.name, "max_wait_minutes", f"must not exceed max_wait_minutes.max ({cap})")
    legacy = s.get_int("legacy.wait.secs", default.legacy_wait_secs, minimum=0,
                       maximum=cap * 60)  # a legacy wait is a queued request's wait too
    return QueueConfig(max_wait_minutes=min(wait, cap), max_wait_minutes_cap=cap,
                       legacy_wait_secs=legacy)
