"""dynvm: disposable VMs on demand from a XenServer / XCP-ng farm."""

__version__ = "0.1.0"
