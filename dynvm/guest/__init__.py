"""Reaching new guests: the adapter behind the core's `GuestProbe` port."""

from dynvm.guest.ssh import SshProbe

__all__ = ["SshProbe"]
