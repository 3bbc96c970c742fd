"""The Jenkins steps that parse /getservers answers, run as real shell pipelines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

DOTTED_QUAD = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")

PIPELINE = 'grep "$TAG" out.json | cut -d: -f2 | xargs | sed \'s/,//g\''
PIPELINE_JSON_TOOL = (
    '"$PY" -m json.tool out.json > pretty.json && mv pretty.json out.json && ' + PIPELINE
)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_pipeline(script: str, body: bytes, tag: str, cwd: Path) -> list[str]:
    (cwd / "out.json").write_bytes(body)
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {script}"],
        cwd=cwd, env={"TAG": tag, "PY": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.split()


def assert_ips(words: list[str], expected: int) -> None:
    assert len(words) == expected, words
    for word in words:
        m = DOTTED_QUAD.fullmatch(word)
        assert m, f"{word!r} is not a dotted quad"
        assert all(0 <= int(part) <= 255 for part in m.groups())


@pytest.mark.parametrize("script", [PIPELINE, PIPELINE_JSON_TOOL], ids=["raw", "json.tool"])
def test_detailed_answer_parses_to_ips(client: FlaskClient, tmp_path: Path, script: str) -> None:
    tag = "jenkins-build-417"
    resp = client.get(f"/getservers/{tag}?os=windows&count=3&format=detailed")
    assert resp.status_code == 200
    words = run_pipeline(script, resp.get_data(), tag, tmp_path)
    assert_ips(words, 3)
    assert words == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_single_vm_detailed_answer(client: FlaskClient, tmp_path: Path) -> None:
    resp = client.get("/getservers/solo-7?format=detailed")
    assert_ips(run_pipeline(PIPELINE, resp.get_data(), "solo-7", tmp_path), 1)
