"""Rewrite calls of the single-interface store to its repositories (`store.put_lease(x)` ->
`store.leases.put(x)`), for code written before the store was split by subject.

    python tools/store_calls.py [PATH ...]      # default: dynvm tests bench tools

Rewrites in place, only on receivers named like a store (`store`, `ctx.store`,
`self._store`, `direct`, `primary`, ...), and is safe to run again. Lines it cannot
judge (an old method name in a string, or on another receiver) are printed for a
person to look at.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

# Old method -> (subject, new method). Methods whose old name is the subject's own name
# (`store.leases(...)`) are rewritten only where they are called.
MOVES: dict[str, tuple[str, str]] = {
    "put_history": ("history", "put"),
    "update_history": ("history", "update"),
    "get_history": ("history", "get"),
    "history_mark": ("history", "mark"),
    "history": ("history", "recent"),
    "put_lease": ("leases", "put"),
    "get_lease": ("leases", "get"),
    "update_lease": ("leases", "update"),
    "transition": ("leases", "transition"),
    "delete_lease": ("leases", "delete"),
    "due_leases": ("leases", "due"),
    "leases": ("leases", "find"),
    "reserve": ("reservations", "reserve"),
    "reserve_many": ("reservations", "reserve_many"),
    "settle_reservation": ("reservations", "settle"),
    "drop_reservations": ("reservations", "drop_request"),
    "reservations": ("reservations", "live"),
    "put_request": ("requests", "put"),
    "finish_request": ("requests", "finish"),
    "get_request": ("requests", "get"),
    "note_request_vm": ("requests", "note_vm"),
    "requests": ("requests", "find"),
    "put_token": ("tokens", "put"),
    "token_by_hash": ("tokens", "by_hash"),
    "revoke_token": ("tokens", "revoke"),
    "tokens": ("tokens", "all"),
    "acquire_lock": ("locks", "acquire"),
    "release_lock": ("locks", "release"),
    "lock_holder": ("locks", "holder"),
    "deployment_id": ("documents", "deployment_id"),
    "get_doc": ("documents", "get"),
    "update_doc": ("documents", "update"),
}
SUBJECTS = {subject for subject, _ in MOVES.values()}
RECEIVER = r"(?P<recv>\b(?:[A-Za-z_]\w*\.)*(?:store|_store|direct|primary))"
CALL = re.compile(RECEIVER + r"\.(?P<old>" + "|".join(sorted(MOVES, key=len, reverse=True))
                  + r")\b(?P<after>\s*\(|(?!\s*[.(]))")
UNIQUE_OLD = sorted(set(MOVES) - SUBJECTS, key=len, reverse=True)
SUSPECT = re.compile(r"""(?<!eases)(?<!eservations)(?<!ocuments)(\.|["'])("""
                     + "|".join(UNIQUE_OLD) + r""")\b""")
# A repository passed on where a method was meant (`_read(store.requests)`).
BARE = re.compile(RECEIVER + r"\.(?:" + "|".join(sorted(SUBJECTS)) + r")\s*[),]")
SKIP = ("dynvm/store/", "dynvm/core/store/", "tools/store_calls.py")


def _rewrite(match: re.Match[str]) -> str:
    old, after = match["old"], match["after"]
    subject, new = MOVES[old]
    if old in SUBJECTS and "(" not in after:
        return match[0]  # the repository itself (`store.leases`), already new style
    return f"{match['recv']}.{subject}.{new}{after}"


def _open_brackets(text: str) -> dict[tuple[int, int], int]:
    """(row, col) of each bracket left open at the end of its line -> the row it closes on."""
    out: dict[tuple[int, int], int] = {}
    stack: list[tuple[int, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                stack.append(tok.start)
            elif tok.type == tokenize.OP and tok.string in ")]}" and stack:
                start = stack.pop()
                if tok.start[0] > start[0]:
                    out[start] = tok.start[0]
    except (tokenize.TokenError, SyntaxError):
        return {}
    return out


def _shift(old: str, col: int) -> int:
    """Where column `col` of line `old` is once the line is rewritten."""
    moved = 0
    for m in CALL.finditer(old):
        if m.end("old") <= col:
            moved += len(_rewrite(m)) - len(m[0])
    return col + moved


def rewrite(path: Path) -> list[str]:
    """Rewrite one file in place, keeping lines aligned under a bracket that moved;
    returns its lines left for a person to judge."""
    text = path.read_text()
    old_lines = text.splitlines(keepends=True)
    lines = [CALL.sub(_rewrite, line) for line in old_lines]
    if lines != old_lines:
        for (row, col), end in _open_brackets(text).items():
            new_col = _shift(old_lines[row - 1], col)
            if new_col == col:
                continue
            for r in range(row, end):  # the lines after the bracket's, up to its close
                body = lines[r].lstrip(" ")
                if len(lines[r]) - len(body) == col + 1:
                    lines[r] = " " * (new_col + 1) + body
        path.write_text("".join(lines))
    return [f"{path}:{n}: {line.strip()}" for n, line in enumerate(lines, 1)
            if SUSPECT.search(line) or BARE.search(line)]


def main(args: list[str]) -> int:
    roots = [Path(a) for a in args] or [Path(p) for p in ("dynvm", "tests", "bench", "tools")]
    files = [f for root in roots for f in ([root] if root.is_file() else root.rglob("*.py"))]
    left: list[str] = []
    for f in sorted(files):
        if not any(str(f).startswith(s) for s in SKIP):
            left += rewrite(f)
    for line in left:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
