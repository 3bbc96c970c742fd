"""Every state word is written once, where its vocabulary is declared (`dynvm.core.lifecycle`).

A state string written by hand anywhere else is a state nobody checks: this
reads every module of `dynvm/` and fails on a quoted word of a declared state
vocabulary (a lease's, a request's, a VM tag's, a history document's, a
rolling reboot's, a build step's) wherever it stands as a value. Not counted:
docstrings, dictionary keys and look-ups (`d["ready"]` is a field named like a
state), and the simulator (`dynvm/sim` speaks XAPI's words, not dynvm's). The
words operators see (`VmShown`, ...) and a run's steps are declared there too,
but are ordinary English elsewhere ("unreachable", "drain"), so not searched.
"""

from __future__ import annotations

import ast
from pathlib import Path

from dynvm.core import lifecycle

VOCABULARIES = (lifecycle.LeaseState, lifecycle.RequestState, lifecycle.TagState,
                lifecycle.HistoryState, lifecycle.RunState, lifecycle.Step)
WORDS = frozenset(m.value for v in VOCABULARIES for m in v)
DECLARED_IN = {"dynvm/core/lifecycle.py"}
NOT_DYNVM = ("dynvm/sim/",)  # the XAPI peer: XAPI's power states and task statuses
# What must stay a literal, and why.
ALLOWED = {
    ("dynvm/config/ini.py", "ready"): "the `ready=` key of a [pool] section",
    ("dynvm/xen/guest.py", "running"): "XAPI's power-state word in its own error's parameters",
    ("dynvm/xen/tasks.py", "cancelled"): "XAPI's task status",
    ("dynvm/api/maintenance.py", "refused"): "the `error` of /maintenance's 409 for a plan "
                                             "that cannot run (its wire format)",
    ("dynvm/core/health.py", "failed"): "prose of a health reason: a rolling reboot that failed",
    ("dynvm/core/release.py", "expired"): "a history document's `delete_reason` for a lease "
                                         "that ran out (the seed's word)",
    ("dynvm/cli/tokens.py", "expired"): "a token's state in `dynvm token list`",
}


def _skipped(node: ast.AST, parent: ast.AST) -> bool:
    """A docstring, a dictionary key, or the key of a look-up: not a state."""
    if isinstance(parent, ast.Expr):
        return True  # a docstring (or a bare string statement)
    if isinstance(parent, ast.Dict) and node in parent.keys:
        return True
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) \
            and parent.func.attr in ("get", "pop", "setdefault") and parent.args \
            and parent.args[0] is node:
        return True
    return False


def raw_state_words(root: Path = Path("dynvm")) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.as_posix()
        if rel in DECLARED_IN or rel.startswith(NOT_DYNVM):
            continue
        tree = ast.parse(path.read_text(), rel)
        for parent in ast.walk(tree):  # every node but the module is some parent's child
            for node in ast.iter_child_nodes(parent):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and node.value in WORDS and not _skipped(node, parent) \
                        and (rel, node.value) not in ALLOWED:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_no_state_word_is_written_by_hand() -> None:
    assert raw_state_words() == []


def test_every_allowed_literal_is_still_there() -> None:
    """An allowance no longer needed is taken out, so the list stays what it says."""
    for (rel, word), why in ALLOWED.items():
        text = Path(rel).read_text()
        assert f'"{word}"' in text or f"'{word}'" in text, (rel, word, why)


# -- the moves of the vocabularies declared beside the lifecycle's --------------------------

def test_a_started_build_is_told_apart_from_a_warm_vm_even_as_older_dynvm_tagged_it() -> None:
    tag = lifecycle.tag_state
    assert tag("started", "r1") is lifecycle.TagState.STARTED
    assert tag("ready", "r1") is lifecycle.TagState.STARTED  # a started build, tagged before
    assert tag("ready", "warm-1") is lifecycle.TagState.READY  # a warm VM, built
    assert tag("active", "r1") is lifecycle.TagState.ACTIVE
    assert tag("", "r1") is None and tag("bogus", "r1") is None


def test_history_and_run_states_move_only_as_declared() -> None:
    import pytest

    H, R = lifecycle.HistoryState, lifecycle.RunState
    lifecycle.check_history_move(None, H.DELETED)  # a new document
    lifecycle.check_history_move("ready", H.AVAILABLE)
    for src, dst in (("deleted", H.AVAILABLE), ("available", H.READY), ("bogus", H.DELETED)):
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.check_history_move(src, dst)
    lifecycle.check_run_move(None, R.RUNNING)
    lifecycle.check_run_move("failed", R.RUNNING)  # resumed
    for run_src, run_dst in (("done", R.DONE), (None, R.INTERRUPTED),
                             ("running", R.INTERRUPTED)):
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.check_run_move(run_src, run_dst)


def test_every_history_document_has_the_seeds_fields_and_types_whatever_is_known() -> None:
    from dynvm.core import history

    full = history.VmFacts(vm_uuid="u1", name="job1", owner="team", os="centos",
                           request_id="r1", host_ref=1, xen_host="xen1", member="h1",
                           template="tmpl", vcpus=2, memory_bytes=2**30, disk_bytes=(5, 6),
                           ip="10.0.0.1", os_version="CentOS", labels=("a",), created=100.0,
                           create_secs=30.4, expires=200.0)
    bare = history.VmFacts(vm_uuid="u2", name="job2", created=100.0)
    a = history.document(full, lifecycle.HistoryState.AVAILABLE)
    b = history.failed(bare, "gone", 150.0)
    assert {k: type(v) for k, v in a.items() if k in b} == {k: type(v) for k, v in b.items()
                                                            if k in a}
    assert a["created_time"] == 130.4 and a["cpu"] == "2" and a["disk"] == "5,6"
    assert a["create_duration_secs"] == 30 and "create_duration_secs" not in b
    assert b["state"] == "failed" and b["username"] == "job2" and b["memory"] == ""
