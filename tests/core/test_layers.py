"""The house rule of DESIGN.md: the core never imports Flask, XenAPI or the Xen layer."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_neither_flask_nor_xenapi() -> None:
    code = (
        "import pkgutil, importlib, sys, dynvm.core\n"
        "for m in pkgutil.iter_modules(dynvm.core.__path__):\n"
        "    importlib.import_module('dynvm.core.' + m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('flask', 'XenAPI', 'werkzeug')"
        " or n.startswith('dynvm.xen') or n.startswith('dynvm.api')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
