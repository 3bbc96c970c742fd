"""Templates the configuration names but a host does not have.

The INI file cannot know what exists on a host: a template name cut short by
an editor (`centos.template=t`) or a template not imported yet is a fact of
the farm. `check-config` asks each host and refuses such a file; a running
service takes it, serves that OS nowhere the template is missing (capacity
counts no room there: `slots_on`), and says so in the log once and on /health
for as long as it lasts. The template appearing later puts the OS back.
"""

from __future__ import annotations

import logging
import threading

from dynvm.config import Config, HostConfig
from dynvm.core.ports import PoolView

log = logging.getLogger("dynvm.config")


def missing_templates(host: HostConfig, view: PoolView) -> list[str]:
    """OS keys of `host` whose template its pool does not have, sorted."""
    return sorted(k for k, spec in host.os.items() if spec.template not in view.templates)


def missing_note(cfg: Config, ref: int, os_key: str) -> str:
    """The report of one missing template: where the file names it, and what it means."""
    return (f"{cfg.where(f'xenhost{ref}', f'{os_key}.template')}no template of that name on "
            f"the host: {os_key} is not served on xenhost{ref} until it exists")


class TemplateWatch:
    """What each host lacks now, from the views every request reads; logs each change once.

    Per process: the views are. A missing template is warned of when first
    seen, and its return is logged, so an operator sees both in the log.
    """

    def __init__(self) -> None:
        self._missing: dict[int, tuple[HostConfig, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        # (host, the view's templates) last compared, per host: the inventory re-issues
        # its templates as one object per change, so every request but the first after a
        # change compares nothing.
        self._seen: dict[int, tuple[HostConfig, object]] = {}

    def see(self, cfg: Config, host: HostConfig, view: PoolView) -> None:
        seen = self._seen.get(host.ref)
        if seen is not None and seen[0] is host and seen[1] is view.templates \
                and cfg.hosts.get(host.ref) is host:
            return
        if cfg.hosts.get(host.ref) is not host:
            return  # a host a reload removed (or changed): its file lines are gone
        self._compare(cfg, host, view)
        self._seen[host.ref] = (host, view.templates)

    def _compare(self, cfg: Config, host: HostConfig, view: PoolView) -> None:
        missing = tuple(missing_templates(host, view))
        known = self._missing.get(host.ref)
        if known is not None and known[0] is host and known[1] == missing:
            return  # the usual case: nothing changed, no lock taken
        with self._lock:
            known = self._missing.get(host.ref)
            before = known[1] if known is not None and known[0] == host else ()
            self._missing[host.ref] = (host, missing)
        for os_key in missing:
            if os_key not in before:
                log.warning("%s", missing_note(cfg, host.ref, os_key))
        for os_key in before:
            if os_key not in missing:
                log.info("xenhost%d has %s.template again: %s is served there", host.ref,
                         os_key, os_key)

    def notes(self, cfg: Config) -> list[str]:
        """The reports for /health: templates missing on the hosts of `cfg` when last seen."""
        out = []
        for ref, host in sorted(cfg.hosts.items()):
            known = self._missing.get(ref)
            if known is not None and known[0] == host:
                out += [missing_note(cfg, ref, os_key) for os_key in known[1]]
        return out
