"""The house rule of DESIGN.md: the core imports neither Flask, XenAPI, nor any adapter.

The core declares its ports (`XenPool`, `Store`) and records; the Xen layer,
the API and the store backends depend on it, never the other way round.
"""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_neither_flask_nor_xenapi_nor_adapters() -> None:
    code = (
        "import pkgutil, importlib, sys, dynvm.core\n"
        "for m in pkgutil.walk_packages(dynvm.core.__path__, 'dynvm.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('flask', 'XenAPI', 'werkzeug')"
        " or n.startswith(('dynvm.xen', 'dynvm.api', 'dynvm.store'))]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
