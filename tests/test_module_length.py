"""No product module over 400 lines without a reason at its top.

A module that long is hard to hold in one's head; when it is long on purpose,
its docstring says why ("Over 400 lines because ..."), so the next reader
knows it was weighed, not grown.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dynvm

LIMIT = 400
REASON = re.compile(r"\bover ~?400 lines\b", re.IGNORECASE)


def long_modules_without_reason(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not REASON.search(" ".join(doc.split())):
            found.append(f"{path.relative_to(root.parent)}: {lines} lines")
    return found


def test_every_long_module_says_why() -> None:
    assert long_modules_without_reason(Path(dynvm.__file__).parent) == []


def test_the_check_finds_a_long_module_and_accepts_a_reason(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "x = 1\n" * (LIMIT + 1)
    (pkg / "long.py").write_text('"""A long module."""\n' + body)
    (pkg / "weighed.py").write_text('"""A long module.\n\nOver 400 lines because it is one\n'
                                    'table."""\n' + body)
    (pkg / "short.py").write_text('"""Short."""\nx = 1\n')
    assert long_modules_without_reason(pkg) == [f"pkg/long.py: {LIMIT + 2} lines"]
