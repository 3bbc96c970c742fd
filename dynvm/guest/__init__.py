"""Reaching guests: the adapters behind the core's `GuestProbe` (is a new guest up?)
and `GuestAccess` (give a booted guest its owner's keys) ports."""

from dynvm.guest.access import SshAccess
from dynvm.guest.ssh import SshProbe

__all__ = ["SshAccess", "SshProbe"]
