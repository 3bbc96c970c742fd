"""The dashboard says so when the store cannot be read, in a real headless browser.

dynvm runs under gunicorn against the simulator; its SQLite file is replaced by
a damaged one while the page is open. The page's refresh then shows a banner
with the reason (desktop and phone widths), keeps what it showed last marked
as stale, and takes the banner away once the store answers again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from dynvm.sim import Farm
from testbed.serving import served, wait_until
from tests.service.conftest import write_ini
from tests.service.test_browser import CHROMEDRIVER, CHROMIUM, _chromium
from tests.service.test_store_unreadable import Damage

pytestmark = [
    pytest.mark.served,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromedriver"),
]

WIDTHS = {"desktop": (1400, 1000), "phone": (390, 844)}


@pytest.fixture
def browser(tmp_path: Path):
    yield from _chromium(tmp_path, javascript=True)


def _banner(drv) -> dict:
    return drv.execute_script(
        "const b = document.getElementById('store-banner'); const r = b.getBoundingClientRect();"
        "return {shown: !b.hidden && r.height > 0, text: b.textContent,"
        " right: r.right, width: window.innerWidth,"
        " stale: document.getElementById('requests').classList.contains('stale')};")


def test_banner_when_the_store_cannot_be_read(tmp_path: Path, farm: Farm, browser) -> None:
    ini = write_ini(tmp_path, farm)
    with served(ini, workers=1, log=tmp_path / "serve.log") as (base, _proc):
        r = requests.get(base + "/getservers/banner?os=centos", timeout=300)
        assert r.status_code == 200, r.text
        try:
            for label, (w, h) in WIDTHS.items():
                browser.set_window_size(w, h)
                browser.get(base + "/?refresh=1")
                assert _banner(browser)["shown"] is False, label
                with Damage(tmp_path / "dynvm.sqlite"):
                    shown = wait_until(lambda: (lambda b: b if b["shown"] else None)(
                        _banner(browser)), timeout=60, interval=0.2,
                        what=f"the banner ({label})")
                    assert "The state store cannot be read" in shown["text"], shown
                    assert "SQLite store" in shown["text"], shown  # the reason, in full
                    assert shown["stale"] is True
                    assert shown["right"] <= shown["width"] + 1, (label, shown)  # on screen
                    browser.save_screenshot(str(tmp_path / f"store-banner-{label}.png"))
                wait_until(lambda: not _banner(browser)["shown"], timeout=60, interval=0.2,
                           what=f"the banner to go once the store answers ({label})")
                assert _banner(browser)["stale"] is False
        finally:
            requests.get(base + "/releaseservers/banner", timeout=120)
