"""The dashboard's Fleet section in a real headless browser, at a phone's and a desktop's width."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.serving import served, wait_until
from tests.service.conftest import write_ini
from tests.service.test_browser import CHROMEDRIVER, CHROMIUM, DESKTOP, PHONE, _chromium
from tests.service.test_fleet import FleetDir, _destroy_fleet

pytestmark = [
    pytest.mark.served,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromedriver: "
                              "sudo apt-get install -y chromium chromium-driver"),
]


@pytest.fixture
def browser(tmp_path: Path):
    yield from _chromium(tmp_path, javascript=True)


def test_the_fleet_section_fits_a_phone_and_a_desktop_and_stays_current(
        tmp_path: Path, farm: Farm, clean_farm: dict, browser) -> None:
    shots = Path(os.environ.get("DYNVM_SCREENSHOT_DIR") or tmp_path)
    ini = write_ini(tmp_path, farm, extra=f"[fleet]\npath={tmp_path / 'fleet'}\n")
    fleet = FleetDir(tmp_path / "fleet")
    small = {"os": "centos", "vcpus": 1, "memory": 1, "disk": 40}
    fleet.put("xenhost1/build-agent-with-a-long-name.ini", host="xenhost1-1", **small)
    fleet.put("xenhost2/cache.ini", **small)
    svc = build_service(str(ini), background=False)
    try:
        assert svc.fleet.apply().failed == []
        with served(ini, workers=1, log=tmp_path / "serve.log") as (base, _proc):
            def rows() -> list[list[str]]:
                return browser.execute_script(
                    "return Array.from(document.querySelectorAll('#fleet-table tr.fleet-vm'))"
                    ".map(r => [r.dataset.name, r.dataset.state]);")

            def summary() -> str:
                # Read in one script: the page's refresh swaps the element out under a
                # reader that looks it up first and reads it later.
                return browser.execute_script(
                    "return document.getElementById('fleet-summary').innerText;")

            for width, height in (DESKTOP, PHONE):
                browser.set_window_size(width, height)
                browser.get(base + "/?refresh=1")
                assert rows() == [["build-agent-with-a-long-name", "ok"], ["cache", "ok"]]
                said = summary()
                assert said.startswith("2 declared, 2 running, 0 not as declared"), said
                # The section stays within the screen; a wide table scrolls in its own box.
                right = browser.execute_script(
                    "return document.getElementById('fleet').getBoundingClientRect().right"
                    " - window.innerWidth;")
                assert right <= 0, f"{width}px: the fleet section overflows by {right}px"
                # No section scrolls sideways: the farm's table fits as the fleet's does.
                wide = browser.execute_script(
                    "return Array.from(document.querySelectorAll('section')).filter("
                    "s => s.scrollWidth > s.clientWidth + 1).map(s => [s.querySelector('h2').id,"
                    " s.scrollWidth, s.clientWidth, Array.from(s.querySelectorAll('th,td,span'))"
                    ".filter(c => c.getBoundingClientRect().right > s.getBoundingClientRect()"
                    ".right).map(c => c.className + ':' + c.textContent.slice(0, 30))]);")
                assert wide == [], f"{width}px: sections scrolling sideways: {wide}"
                # Each VM's name and state are seen without scrolling sideways, on a phone too.
                seen = browser.execute_script(
                    "return Array.from(document.querySelectorAll('#fleet-table tr.fleet-vm'))"
                    ".map(r => [r.cells[0], r.querySelector('.badge')]"
                    ".map(e => e.getBoundingClientRect()))"
                    ".map(([n, s]) => [n.left, s.right, s.width]);")
                inner = browser.execute_script("return window.innerWidth;")
                assert all(left >= 0 and 0 < width and right <= inner
                           for left, right, width in seen), (width, seen)
                browser.execute_script("document.getElementById('fleet-title').scrollIntoView();")
                browser.save_screenshot(str(shots / f"fleet-{width}.png"))
            # A file removed: the refresh shows the VM kept, without a reload.
            browser.execute_script("window.__sameDocument = true;")
            fleet.remove("xenhost2/cache.ini")
            wait_until(lambda: ["cache", "kept"] in rows(), timeout=30,
                       what="the page to show the removed file's VM as kept")
            assert browser.execute_script("return window.__sameDocument === true;")
            why = browser.execute_script(
                "const e = document.querySelector(\"#fleet-table tr[data-name='cache'] .reason\");"
                "return [e.getBoundingClientRect().height > 0, e.innerText];")
            assert why[0] and "apply --prune destroys it" in why[1], why
            said = summary()
            assert said.startswith("1 declared, 1 running, 1 not as declared"), said
            browser.execute_script("document.getElementById('fleet-title').scrollIntoView();")
            browser.save_screenshot(str(shots / "fleet-kept.png"))
    finally:
        _destroy_fleet(svc, farm)
        svc.close()
