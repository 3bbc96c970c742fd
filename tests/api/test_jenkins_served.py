"""The seed's Jenkins helper, unchanged, as a real bash step with curl against
`dynvm serve` (gunicorn) on a simulated farm."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynvm.sim.farm import Farm
from testbed.inis import Ini
from tests.api.test_jenkins import DOTTED_QUAD, PIPELINE
from tests.api.test_serve import Server, serve  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.served,
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("curl") is None,
                       reason="needs bash and curl"),
]

# What the seed's helper sent on every request: `cpus=default&mem=default`,
# `count` and `os` left out (one VM of the default OS), or given empty.
STEP = r"""
set -euo pipefail
code=$(curl -s -o out.json -w '%{http_code}' \
  "$DYNVM/getservers/$TAG?cpus=default&mem=default&format=detailed")
[ "$code" = 200 ] || { echo "getservers answered $code: $(cat out.json)" >&2; exit 1; }
IPS=$(PIPELINE)
echo "$IPS" > ips.txt
code=$(curl -s -o list.json -w '%{http_code}' \
  "$DYNVM/getservers/${TAG}x?os=&count=2&cpus=default&mem=default&expiresin=&labels=")
[ "$code" = 200 ] || { echo "getservers (list) answered $code: $(cat list.json)" >&2; exit 1; }
"$PY" -m json.tool list.json > /dev/null
curl -s -o head.txt -w '%{http_code}\n' -I "$DYNVM/getservers/${TAG}head" > head.code
curl -s -o long.txt -w '%{http_code}\n' "$DYNVM/getservers/$TAG?pad=$(printf 'x%.0s' $(seq 5000))" \
  > long.code
curl -s -o rel1.json "$DYNVM/releaseservers/$TAG?count="
curl -s -o rel2.json "$DYNVM/releaseservers/${TAG}x?count=2"
""".replace("PIPELINE", PIPELINE)


@pytest.fixture
def farm() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=2, speed=200).start()
    try:
        yield f
    finally:
        f.stop()


def test_seed_jenkins_step_against_a_served_instance(serve, farm: Farm,  # noqa: F811
                                                     tmp_path: Path) -> None:
    ini = Ini.of_farm(farm).sqlite_store(tmp_path).write(tmp_path / "dynvm.ini")
    server: Server = serve("--workers", "2", env={"DYNVM_CONFIG": str(ini)})
    url = server.wait_listening()
    work = tmp_path / "job"
    work.mkdir()
    farm.reset_call_counts()
    done = subprocess.run(
        ["bash", "-c", STEP], cwd=work, capture_output=True, text=True, timeout=300,
        env={"DYNVM": url, "TAG": "jenkins-seed-42", "PY": sys.executable,
             "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr + server.log.read_text()[-3000:]
    words = (work / "ips.txt").read_text().split()
    assert len(words) == 1 and DOTTED_QUAD.fullmatch(words[0]), words
    assert (work / "rel1.json").read_text() == '[\n  "jenkins-seed-42"\n]'
    assert (work / "rel2.json").read_text() == '[\n  "jenkins-seed-42x1",\n  "jenkins-seed-42x2"\n]'
    # HEAD (curl -I) on a route that builds VMs: 405, nothing built
    assert (work / "head.code").read_text().strip() == "405"
    names = {r["name_label"] for p in farm.pools for r in p.db.tables["VM"].values()}
    assert "jenkins-seed-42head" not in names
    # an over-long request line: gunicorn passes it on, dynvm answers one line
    assert (work / "long.code").read_text().strip() == "414"
    long_body = (work / "long.txt").read_text()
    assert long_body.startswith("Error: request line too long") and "\n" not in long_body
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log
