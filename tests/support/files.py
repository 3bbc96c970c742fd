"""What a test checks of the files dynvm leaves behind."""

from __future__ import annotations

import stat
from pathlib import Path


def not_private(root: Path) -> dict[str, str]:
    """Everything under `root` (itself included) that others may read, write or enter."""
    out = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            out[str(path.relative_to(root.parent))] = oct(mode)
    return out
