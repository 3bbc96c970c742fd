"""The dashboard in a real headless browser (Debian's chromium + chromedriver via selenium).

dynvm runs under gunicorn with two workers against a simulated farm. A build
the page must be seen moving through is held at its steps by the simulator
(each until the page shows it), never slowed down and timed. `[auth] legacy=mutating` is on:
the browser signs in with a token, and an owner's page shows only its VMs.
The tests that leave the configuration alone share one served instance and
one browser (cleared of cookies before each); tokens are made in the store
as `dynvm token create` makes them (the command itself is tested with the CLI).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import requests

from dynvm.core.progress import Step
from dynvm.sim import Farm
from testbed.serving import served, wait_until
from tests.service.conftest import SPEED, write_ini
from tests.support.auth import auth_section, token_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.served,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromedriver: "
                              "sudo apt-get install -y chromium chromium-driver"),
]

# The build steps the page must show while a build runs, each held until it does.
HELD_STEPS = {Step.PROVISIONING: "VM.provision", Step.STARTING: "VM.start_on"}


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    """One browser for the module's tests with JavaScript on (`browser` clears it)."""
    yield from _chromium(tmp_path_factory.mktemp("chromium"), javascript=True)


@pytest.fixture
def browser(chromium):
    """The module's browser as a new visitor would bring it: no cookie, desktop size."""
    fresh(chromium)
    return chromium


@pytest.fixture
def browser_without_js(tmp_path: Path):
    yield from _chromium(tmp_path, javascript=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, farm: Farm) -> Iterator[tuple[str, Path]]:
    """dynvm served with `[auth] legacy=mutating` (two workers) for the tests that only
    use it: its URL and INI file. Each test releases what it asked for."""
    tmp = tmp_path_factory.mktemp("site")
    ini = write_ini(tmp, farm, extra=auth_section("mutating"))
    with served(ini, workers=2, log=tmp / "serve.log") as (base, _proc):
        yield base, ini


def fresh(drv) -> None:
    """No cookie of any earlier test (every served instance is 127.0.0.1), the usual size."""
    drv.get("about:blank")
    drv.execute_cdp_cmd("Network.clearBrowserCookies", {})
    drv.set_window_size(*DESKTOP)


def _chromium(tmp_path: Path, javascript: bool):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    if not javascript:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    assert CHROMIUM is not None
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1800"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


PHONE = (390, 844)
DESKTOP = (1400, 1800)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sign_in(drv, base: str, secret: str, then: str = "/") -> None:
    """Through the page's own form, as a person would (it works without JavaScript too)."""
    from selenium.webdriver.common.by import By

    drv.get(base + then)  # no cookie yet: the page answers with the sign-in form
    box = wait_until(lambda: drv.find_elements(By.ID, "signin-token"), timeout=30,
                     what="the sign-in form")[0]
    box.send_keys(secret)
    drv.find_element(By.ID, "signin-submit").click()
    wait_until(lambda: drv.find_elements(By.ID, "signed-in"), timeout=30, what="the signed-in page")


def sign_out(drv) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.ID, "signout").click()
    wait_until(lambda: drv.find_elements(By.ID, "signin-form"), timeout=30, what="signed out")


def test_sign_in_form_fits_a_phone_and_a_desktop(tmp_path: Path, site, browser) -> None:
    from selenium.webdriver.common.by import By

    base, _ini = site
    for width, height in (PHONE, DESKTOP):
        browser.set_window_size(width, height)
        browser.get(base + "/")
        form = browser.find_element(By.ID, "signin-form")
        box = browser.find_element(By.ID, "signin-token")
        button = browser.find_element(By.ID, "signin-submit")
        inner = browser.execute_script("return window.innerWidth;")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth;")
        assert overflow <= 0, f"{width}px: the page scrolls sideways by {overflow}px"
        for el in (form, box, button):
            assert el.is_displayed() and el.rect["x"] >= 0
            assert el.rect["x"] + el.rect["width"] <= inner, (width, el.rect)
        browser.save_screenshot(str(tmp_path / f"signin-{width}.png"))
    wrong = browser.find_element(By.ID, "signin-token")
    wrong.send_keys("dvm_not-a-token")
    browser.find_element(By.ID, "signin-submit").click()
    msg = wait_until(lambda: browser.find_elements(By.ID, "signin-error"), timeout=30,
                     what="the refusal")[0]
    assert "not valid" in msg.text


def test_dashboard_in_a_browser(tmp_path: Path, farm: Farm, site, browser) -> None:
    from selenium.webdriver.common.by import By

    base, ini = site
    team, rival, admin = (token_for(ini, "webui"), token_for(ini, "rival"),
                          token_for(ini, "ops", admin=True))
    r = requests.get(base + "/getservers/rival?os=centos&expiresin=120", headers=bearer(rival),
                     timeout=300)
    assert r.status_code == 200, r.text
    sign_in(browser, base, team, then="/?refresh=1")
    assert "dynvm" in browser.title
    assert browser.current_url.endswith("/?refresh=1")
    assert "js" in browser.execute_script("return document.documentElement.className")
    browser.execute_script("window.__sameDocument = true;")
    # A build through the legacy API, watched while it runs: held at each step of
    # HELD_STEPS until the page shows it there.
    holds = {str(step): farm.hold(method) for step, method in HELD_STEPS.items()}
    answer: dict = {}
    call = threading.Thread(target=lambda: answer.update(r=requests.get(
        base + "/getservers/webui?os=centos&count=2&expiresin=120", headers=bearer(team),
        timeout=300)))
    call.start()
    order = [str(s) for s in Step]
    seen: list[str] = []

    def steps_progress() -> bool:
        # Read in one script: the refresh swaps the elements out under a slower reader.
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('#requests-running .step'))"
            ".map(e => [e.dataset.vm, e.dataset.step]);")
        for vm, step in shown:
            if vm == "webui1" and (not seen or seen[-1] != step):
                seen.append(step)
                if step in holds:
                    holds[step].release()
        return not call.is_alive()

    try:
        wait_until(steps_progress, timeout=240, interval=0.1, what="the build to finish")
    finally:
        for hold in holds.values():
            hold.release()
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert [s for s in seen if s in holds] == list(holds), seen  # each step, in order
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen), seen

    # The VMs land in the table with owner and expiry, without a reload.
    def listed() -> list:
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('#vm-table tr.vm'))"
            ".filter(r => r.dataset.name.startsWith('webui')).map(r => [r.dataset.name,"
            " r.querySelector('.vm-owner').textContent, r.querySelector('.vm-state')"
            ".textContent.trim(), r.querySelector('.vm-expires').textContent]);")
        return rows if len(rows) == 2 and all(r[2] == "leased" for r in rows) else []

    rows = wait_until(listed, timeout=30, interval=0.2, what="both VMs listed as leased")
    assert browser.execute_script("return window.__sameDocument === true;")
    assert [(name, owner) for name, owner, _, _ in rows] == [("webui1", "webui"),
                                                             ("webui2", "webui")]
    for _, _, _, expires in rows:
        assert expires.startswith(("1h 59m", "2h 0m", "1h 58m")), expires
    # An owner's page: its own VMs only, no other team's and no VM dynvm did not make.
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('#vm-table tr.vm'))"
        ".map(r => r.dataset.name);")
    assert sorted(shown) == ["webui1", "webui2"], shown
    assert "rival" not in browser.find_element(By.ID, "requests").text
    shot_dir = Path(os.environ.get("DYNVM_SCREENSHOT_DIR") or tmp_path)
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    if shot_dir != tmp_path:
        shutil.copy(tmp_path / "dashboard.png", shot_dir / "dashboard.png")
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    # History: release, then search it by name in the form.
    r = requests.get(base + "/releaseservers/webui?count=2", headers=bearer(team), timeout=60)
    assert r.status_code == 200, r.text
    browser.get(base + "/")
    box = browser.find_element(By.ID, "h-name")
    box.send_keys("webui2")
    browser.find_element(By.ID, "h-search").click()
    wait_until(lambda: "webui2" in (browser.current_url or ""), timeout=30,
               what="the history search to load")

    def found() -> list:
        # The release closed the history before it answered, and every worker reads the
        # store's current history: no refresh may be needed, whichever worker served the page.
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#history-table tr.hist'))"
            ".map(r => [r.dataset.name, r.cells[3].textContent]);")

    rows = wait_until(found, timeout=30, interval=0.5, what="the search's history table")
    assert all(state == "deleted" for _, state in rows), rows
    assert [name for name, _ in rows] == ["webui2"], rows
    csv_link = browser.find_element(By.ID, "h-csv").get_attribute("href")
    assert requests.get(csv_link, timeout=30).status_code == 401  # not without the cookie
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    jar = browser.get_cookies()
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in jar
               if c["name"] == "dynvm_token"), jar
    csv = requests.get(csv_link, cookies=cookies, timeout=30).text
    assert "webui2" in csv and "webui1" not in csv
    browser.save_screenshot(str(tmp_path / "history.png"))
    # An admin sees every team's VMs.
    sign_out(browser)
    sign_in(browser, base, admin)
    shown = wait_until(lambda: browser.execute_script(
        "return Array.from(document.querySelectorAll('#vm-table tr.vm:not(.foreign)'))"
        ".map(r => r.dataset.name);"), timeout=30, what="the admin's VM table")
    assert shown == ["rival"], shown
    requests.get(base + "/releaseservers/rival", headers=bearer(rival), timeout=60)


def test_tables_sort_and_filter_with_javascript_off(site, browser_without_js) -> None:
    from selenium.webdriver.common.by import By

    drv = browser_without_js
    base, ini = site
    admin = token_for(ini, "ops", admin=True)
    for name in ("zeta", "alpha"):
        r = requests.get(f"{base}/getservers/{name}?os=centos", headers=bearer(admin),
                         timeout=300)
        assert r.status_code == 200, r.text
    sign_in(drv, base, admin)  # the form needs no script
    # The page's own script (which marks <html class="js">) really did not run.
    assert "js" not in drv.execute_script("return document.documentElement.className")

    def shows(want: list[str]):
        # Read in one script, as the next page may replace this one at any moment.
        return lambda: drv.execute_script(
            "return Array.from(document.querySelectorAll('#vm-table tr.vm:not(.foreign)'))"
            ".map(r => r.dataset.name);") == want

    wait_until(shows(["alpha", "zeta"]), timeout=30, what="the VMs by name")
    drv.find_element(By.LINK_TEXT, "Name ▲").click()  # same column again: descending
    wait_until(shows(["zeta", "alpha"]), timeout=30, what="the VMs by name, descending")
    box = drv.find_element(By.ID, "vm-q")
    box.send_keys("zet")
    box.submit()
    wait_until(shows(["zeta"]), timeout=30, what="the filtered table")
    assert "q=zet" in drv.current_url
    for name in ("zeta", "alpha"):
        requests.get(f"{base}/releaseservers/{name}", headers=bearer(admin), timeout=120)


WIDTHS = (1400, 1024, 720, PHONE[0])  # a desktop, a tablet, a phone on its side, upright


def _shown(el, css: str) -> list:
    """The elements under `el` matching `css` that are displayed."""
    from selenium.webdriver.common.by import By

    return [e for e in el.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
SECTIONS = {"farm": "#farm-table tbody tr", "vms": "#vm-table tr.vm",
            "requests": "#requests-recent tr.request", "warm": "#warm tbody tr",
            "history": "#history-table tr.hist"}


def test_every_section_reads_at_desktop_and_phone_widths(tmp_path: Path, farm: Farm,
                                                         browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    warm = "\n[pool centos]\nready=1\nready.ttl.minutes=60\n"
    ini = write_ini(tmp_path, farm, extra=auth_section("mutating") + warm)
    team_a, admin = token_for(ini, "team-a"), token_for(ini, "ops", admin=True)
    with served(ini, workers=2, log=tmp_path / "serve.log") as (base, _proc):
        for job in ("perf", "smoke"):
            r = requests.get(f"{base}/getservers/{job}?os=centos&count=2&expiresin=60",
                             headers=bearer(team_a), timeout=300)
            assert r.status_code == 200, r.text
        r = requests.get(f"{base}/releaseservers/smoke?count=2", headers=bearer(team_a), timeout=60)
        assert r.status_code == 200, r.text
        sign_in(browser, base, admin)
        shot_dir = Path(os.environ.get("DYNVM_SCREENSHOT_DIR") or tmp_path)
        for width in WIDTHS:
            browser.set_window_size(width, 1600)
            browser.get(base + "/?refresh=3600")
            counts = wait_until(lambda: (lambda c: c if all(c.values()) else None)(
                browser.execute_script(
                    "var s = arguments[0], out = {}; Object.keys(s).forEach(function (k) {"
                    " out[k] = document.querySelectorAll(s[k]).length; }); return out;",
                    SECTIONS)), timeout=60, what=f"every section with data at {width}px")
            assert counts["history"] >= 2, counts
            browser.save_screenshot(str(shot_dir / f"dashboard-{width}.png"))
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth;")
            assert overflow <= 0, f"{width}px: the page scrolls sideways by {overflow}px"
            wide = browser.execute_script(
                "return Array.from(document.querySelectorAll('section')).filter("
                "s => s.scrollWidth > s.clientWidth + 1).map(s => s.querySelector('h2').id);")
            assert wide == [], f"{width}px: sections scrolling sideways: {wide}"
            tallest = browser.execute_script(
                "return Math.max.apply(null, Array.from(document.querySelectorAll("
                "'#vm-table tr.vm, #requests-recent tr.request, #farm-table tbody tr'))"
                ".map(r => r.getBoundingClientRect().height));")
            assert tallest < 200, f"{width}px: a row {tallest}px tall"
            # The charts: drawn by the chart library, with both axes labelled.
            wait_until(lambda: browser.find_element(By.TAG_NAME, "body")
                       .get_attribute("data-charts") == "3", timeout=30, what="three charts")
            charts = browser.find_elements(By.CSS_SELECTOR, "#history-charts .uplot")
            assert len(charts) == 3
            for chart in charts:
                assert chart.find_elements(By.TAG_NAME, "canvas")
                assert chart.rect["x"] + chart.rect["width"] <= width
                axes = chart.get_attribute("data-axes").split("|")
                assert axes[0] == "time (UTC)" and axes[1] in ("VMs", "seconds", "minutes"), axes
                assert "centos" in chart.find_element(By.CSS_SELECTOR, ".u-legend").text
            # A tooltip where the cursor is over a point of the first chart.
            over = charts[0].find_element(By.CSS_SELECTOR, ".u-over")
            ActionChains(browser).move_to_element(over).perform()
            tip = wait_until(partial(_shown, charts[0], ".chart-tip"), timeout=10,
                             what="the chart's tooltip")[0]
            assert "UTC" in tip.text and "centos" in tip.text, tip.text
            assert browser.find_element(By.ID, "api-docs").get_attribute("href") \
                .endswith("/api/v1/docs")
            owners = browser.execute_script(
                "return Array.from(document.querySelectorAll('#requests-recent .req-owner'))"
                ".map(e => e.textContent);")
            assert "team-a" in owners, owners
            browser.save_screenshot(str(shot_dir / f"dashboard-{width}.png"))
        # The History owner filter finds the token owner's VMs, and shows the owner.
        browser.set_window_size(*DESKTOP)
        browser.get(base + "/")
        browser.find_element(By.ID, "h-owner").send_keys("team-a")
        browser.find_element(By.ID, "h-search").click()
        wait_until(lambda: "h_owner=team-a" in (browser.current_url or ""), timeout=30,
                   what="the owner search")
        rows = wait_until(lambda: browser.execute_script(
            "return Array.from(document.querySelectorAll('#history-table tr.hist'))"
            ".map(r => [r.dataset.name, r.querySelector('.hist-owner').textContent]);"),
            timeout=30, what="the owner's history")
        assert sorted(name for name, _ in rows) == ["smoke1", "smoke2"] or \
            {name for name, _ in rows} >= {"smoke1", "smoke2"}, rows
        assert {owner for _, owner in rows} == {"team-a"}, rows
        requests.get(f"{base}/releaseservers/perf?count=2", headers=bearer(team_a), timeout=60)


@pytest.fixture
def farm_of_four() -> Iterator[Farm]:
    """A farm of its own with room for exactly four centos VMs (one per host): what the
    module's shared farm holds after the tests before (a warm VM, say) must not fill it."""
    with Farm.generate(pools=2, hosts=2, speed=SPEED) as own:
        yield own


def test_the_queue_on_a_phone_and_a_desktop(tmp_path: Path, farm_of_four: Farm,
                                            browser) -> None:
    """A full farm, one request waiting: the Queue section shows its position, owner, OS,
    count, time waited and ETA, at a phone's width and a desktop's."""
    from selenium.webdriver.common.by import By

    from testbed.inis import Ini

    farm = farm_of_four
    ini = write_ini(tmp_path, farm, extra=auth_section("mutating"),
                    hosts=Ini.of_farm(farm).set_hosts({"host.vms.max.centos": 1}))
    team, admin = token_for(ini, "webq"), token_for(ini, "ops", admin=True)
    with served(ini, workers=2, log=tmp_path / "serve.log") as (base, _proc):
        api = base + "/api/v1/requests"
        full = requests.post(api, json={"os": "centos", "count": 4, "name": "full"},
                             headers=bearer(admin), timeout=60)
        assert full.status_code == 202, full.text
        wait_until(lambda: requests.get(f"{api}/{full.json()['id']}?wait=5",
                                        headers=bearer(admin), timeout=60).json()["state"]
                   == "done", timeout=240, what="the farm to be full")
        waiting = requests.post(api, json={"os": "centos", "count": 2, "name": "wq"},
                                headers=bearer(team), timeout=60)
        assert waiting.status_code == 202 and waiting.json()["state"] == "queued", waiting.text
        try:
            sign_in(browser, base, admin)
            for width, height in (PHONE, DESKTOP):
                browser.set_window_size(width, height)
                browser.get(base + "/?refresh=3600#requests")  # no redraw under the reads
                row = wait_until(lambda: browser.find_elements(
                    By.CSS_SELECTOR, "#requests-queued tr.queued"), timeout=30,
                    what="the queued request's row")[0]
                cells = {c: row.find_element(By.CLASS_NAME, c).text
                         for c in ("q-position", "q-owner", "q-os", "q-count", "q-waited",
                                   "q-eta")}
                assert cells["q-position"] == "1" and cells["q-owner"] == "webq", cells
                assert (cells["q-os"], cells["q-count"]) == ("centos", "2"), cells
                assert cells["q-waited"] and cells["q-eta"].startswith("about "), cells
                browser.execute_script("arguments[0].scrollIntoView();", row)
                assert row.is_displayed()
                inner = browser.execute_script("return window.innerWidth;")
                overflow = browser.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth;")
                assert overflow <= 0, f"{width}px: the page scrolls sideways by {overflow}px"
                assert row.find_element(By.CLASS_NAME, "q-position").rect["x"] >= 0, inner
                browser.save_screenshot(str(tmp_path / f"queue-{width}.png"))
        finally:
            requests.delete(f"{api}/{waiting.json()['id']}", headers=bearer(team), timeout=60)
            for n in range(1, 5):
                requests.delete(f"{base}/api/v1/vms/full{n}", headers=bearer(admin), timeout=120)
