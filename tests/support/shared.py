"""Where the team's shared material is (`shared/docs`, `shared/xapi-db`).

It sits beside the integration checkout, so a worktree one level deeper
must look further up: the nearest `shared/` above the repository wins.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_path(*parts: str) -> Path:
    """`shared/<parts>` in the nearest directory above the repository that has it.

    When none has it, the path beside the repository (which does not exist):
    callers skip on `.exists()`, naming the path they looked for.
    """
    for base in REPO.parents:
        candidate = base.joinpath("shared", *parts)
        if candidate.exists():
            return candidate
    return REPO.parent.joinpath("shared", *parts)


XAPI_DB = shared_path("xapi-db")
XENAPI_JSON = shared_path("docs", "xenapi.json")
