"""The house rule of DESIGN.md: the core imports neither Flask, XenAPI, nor any adapter.

The core declares its ports (`XenPool`, `Store`, `GuestProbe`) and records; the
Xen layer, the guest probe, the API and the store backends depend on it, never
the other way round.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def forbidden_imports(package: str, forbidden: tuple[str, ...]) -> str:
    """Modules starting with one of `forbidden` that importing all of `package` loads."""
    code = (
        f"import pkgutil, importlib, sys, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('flask', 'XenAPI', 'werkzeug',"
        " 'paramiko')"
        f" or n.startswith({forbidden!r})]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_core_imports_neither_flask_nor_xenapi_nor_adapters() -> None:
    assert forbidden_imports("dynvm.core", ("dynvm.xen", "dynvm.api", "dynvm.store",
                                            "dynvm.guest", "dynvm.runtime")) == ""


def test_config_imports_neither_the_xen_layer_nor_the_store_nor_the_core() -> None:
    """Configuration is read and checked without XenAPI: asking hosts for their templates
    is the CLI's (dynvm check-config) and the core's, through its XenPool port."""
    assert forbidden_imports(
        "dynvm.config", ("dynvm.xen", "dynvm.api", "dynvm.store", "dynvm.core")) == ""


def imports_in(package_dir: str) -> dict[str, set[str]]:
    """Every module each file of `package_dir` imports, at any depth (lazy imports too)."""
    out: dict[str, set[str]] = {}
    for path in sorted(Path(package_dir).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[str(path)] = names
    return out


def test_no_core_module_imports_an_adapter_even_lazily() -> None:
    """Imports inside functions included: paramiko (the SSH check) and the Xen layer are
    reached through ports whose adapters the bootstrap hands in."""
    forbidden = ("flask", "werkzeug", "XenAPI", "paramiko", "dynvm.xen", "dynvm.api",
                 "dynvm.store", "dynvm.guest", "dynvm.runtime")
    bad = {path: sorted(n for n in names if n.split(".")[0] in forbidden
                        or n.startswith(tuple(f"{f}." for f in forbidden) + forbidden))
           for path, names in imports_in("dynvm/core").items()}
    assert {p: n for p, n in bad.items() if n} == {}


def test_the_core_opens_no_socket() -> None:
    """Reaching a guest is the GuestProbe adapter's (dynvm.guest), not the core's."""
    found = [str(p) for p in Path("dynvm/core").rglob("*.py")
             if "create_connection" in p.read_text() or "socket.socket" in p.read_text()]
    assert found == []


def test_benchmarks_and_the_testbed_never_import_the_tests() -> None:
    """What both need (serving dynvm, INI files, simulated pools) is in `testbed/`."""
    bad = {path: sorted(n for n in names if n == "tests" or n.startswith("tests."))
           for d in ("bench", "testbed") for path, names in imports_in(d).items()}
    assert {p: n for p, n in bad.items() if n} == {}


# What the HTTP layer may import from the core: the service layer (every use case, and the
# types they take and give back, re-exported there), the stored records and the errors.
API_MAY_IMPORT = ("dynvm.core.services", "dynvm.core.records", "dynvm.core.errors")
# Names of what lies behind the service layer: the HTTP layer never reaches for them.
BEHIND_THE_SERVICES = frozenset({"ctx", "store", "registry", "background", "store_probe",
                                 "runtime", "rt", "_rt"})


def core_imports(path: Path) -> list[str]:
    """The core modules a file imports (lazily too); `from dynvm.core import x` is `x`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("dynvm.core")]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "dynvm.core":
                out += [f"dynvm.core.{a.name}" for a in node.names]
            elif node.module.startswith("dynvm.core."):
                out.append(node.module)
    return out


def test_the_http_layer_reaches_the_core_only_through_the_service_layer() -> None:
    bad = {str(p): [m for m in core_imports(p)
                    if not any(m == ok or m.startswith(ok + ".") for ok in API_MAY_IMPORT)]
           for p in sorted(Path("dynvm/api").rglob("*.py"))}
    assert {p: m for p, m in bad.items() if m} == {}


def _is_service(expr: ast.expr) -> bool:
    """The service (or a part of it) as the HTTP layer names it."""
    text = ast.unparse(expr)
    return text in ("svc", "service", "store", "core") or "extensions[" in text \
        or text.startswith(("svc.", "service()", "_svc()"))


def test_the_http_layer_touches_neither_the_context_nor_a_private_name() -> None:
    """No `svc.ctx.store`, no `svc._touch()`, no `getattr(store, ...)`: only the service
    layer's public methods (a private name is its object's own business: `self._x`, or
    `super()._x` in the override of a base class's method)."""
    found = []
    for p in sorted(Path("dynvm/api").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Attribute):
                private = (node.attr.startswith("_") and not node.attr.endswith("__")
                           and ast.unparse(node.value) not in ("self", "cls", "super()"))
                if private or node.attr in BEHIND_THE_SERVICES:
                    found.append(f"{p}:{node.lineno}: {ast.unparse(node)}")
            elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "hasattr")
                  and node.args and _is_service(node.args[0])):
                found.append(f"{p}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
