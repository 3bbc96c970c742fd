"""How the store fails: the errors every repository of every backend raises."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached (or timed out) after bounded retries.

    New VM requests are refused with 503 when this is raised: capacity cannot
    be reserved safely without the store.
    """


class Conflict(StoreError):
    """A compare-and-swap kept failing after bounded retries."""
