"""The house rule of DESIGN.md: the core imports neither Flask, XenAPI, nor any adapter.

The core declares its ports (`XenPool`, `Store`) and records; the Xen layer,
the API and the store backends depend on it, never the other way round.
"""

from __future__ import annotations

import subprocess
import sys


def forbidden_imports(package: str, forbidden: tuple[str, ...]) -> str:
    """Modules starting with one of `forbidden` that importing all of `package` loads."""
    code = (
        f"import pkgutil, importlib, sys, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('flask', 'XenAPI', 'werkzeug')"
        f" or n.startswith({forbidden!r})]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_core_imports_neither_flask_nor_xenapi_nor_adapters() -> None:
    assert forbidden_imports("dynvm.core", ("dynvm.xen", "dynvm.api", "dynvm.store")) == ""


def test_config_imports_neither_the_xen_layer_nor_the_store_nor_the_core() -> None:
    """Configuration is read and checked without XenAPI: asking hosts for their templates
    is the CLI's (dynvm check-config) and the core's, through its XenPool port."""
    assert forbidden_imports(
        "dynvm.config", ("dynvm.xen", "dynvm.api", "dynvm.store", "dynvm.core")) == ""
