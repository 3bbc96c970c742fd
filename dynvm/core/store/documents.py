"""The document repository: small JSON documents of dynvm's own state, and its identity."""

from __future__ import annotations

import abc
from typing import Any

from dynvm.core.records import DocEdit


class Documents(abc.ABC):
    """Operator state by key (host drains, maintenance runs), edited atomically."""

    @abc.abstractmethod
    def get(self, key: str) -> dict[str, Any] | None:
        """A small JSON document of dynvm's own state by key, or None."""

    @abc.abstractmethod
    def update(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        """Atomically replace the document by `edit(current)` (None deletes it).

        Returns what was stored (None when deleted or left missing). Two
        processes editing at once never lose each other's change.
        """

    @abc.abstractmethod
    def deployment_id(self, new: str | None) -> str | None:
        """This deployment's identity: the one stored, or `new`, stored now if there is none.

        With `new=None` it only reads (None while no identity was assigned).
        Atomic: of two processes starting at once on an empty store, both get
        the same answer. Every VM dynvm builds is tagged with it, so a
        deployment never acts on another's VMs.
        """
