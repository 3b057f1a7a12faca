# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint remote access in a real browser: Chromium talks only to the
reference server's browser side of the tunnel (tests/refserver_tunnel.py),
which carries every request as http.tunnelv2 and every socket as ws.tunnel
over the printer's device websocket; the plugin replays them against the
real OctoPrint. Screenshots go to $TSD_TEST_OUTPUT/screenshots.

The second rig turns OctoPrint's autologin for local networks on: a browser
on the printer itself is logged in automatically, the tunnelled one still
gets the login page.
"""

import contextlib
import os

import pytest
import requests

from refserver_tunnel import TunnelFrontend
from remote_rig import TOKEN, linked_octoprint
from test_remote_access_octoprint import AUTOLOGIN
from tsd_testing import ADMIN, browser_login, output_dir, print_gcode, wait_for
from webcam_sim import WebcamSim

UPLOAD_NAME = "tunnel-upload.gcode"


@contextlib.contextmanager
def tunnelled_octoprint(tmp_path_factory, name, **options):
    """linked_octoprint() with the reference server's browser side of the
    tunnel started: .frontend.url is where the browser goes."""
    with linked_octoprint(tmp_path_factory, name, 1.0, **options) as linked:
        assert wait_for(lambda: linked.server.live(TOKEN) == 1, 60)
        linked.frontend = TunnelFrontend(linked.server, TOKEN).start()
        try:
            yield linked
        finally:
            linked.frontend.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """With a simulated webcam, so that the plugin's tab has a frame to show."""
    sim = WebcamSim().start()
    try:
        with tunnelled_octoprint(tmp_path_factory, "tunnel-ui", plugin_settings={
                "classicwebcam": {"snapshot": sim.snapshot_url, "stream": sim.stream_url}}) as linked:
            yield linked
    finally:
        sim.stop()


def screenshot(page, name):
    page.screenshot(path=os.path.join(output_dir("screenshots"), name), full_page=True)


def tunnelled_page(browser, rig):
    """A page whose every request must go to the tunnel: anything else fails."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    failures = []
    elsewhere = []
    page.on("requestfailed", lambda r: failures.append(r.url))
    page.on("response", lambda r: failures.append("{} {}".format(r.status, r.url))
            if r.status >= 400 else None)
    page.on("request", lambda r: elsewhere.append(r.url)
            if not r.url.startswith((rig.frontend.url, "data:", "blob:")) else None)
    return page, failures, elsewhere


def test_tunnel_ui_login_page_loads_with_its_assets(rig, browser):
    page, failures, elsewhere = tunnelled_page(browser, rig)
    try:
        page.goto(rig.frontend.url + "/", wait_until="networkidle")
        page.wait_for_selector("#login-user", state="visible", timeout=60000)
        screenshot(page, "tunnel_ui_login_page.png")
        assets = [p for m, p, s in rig.frontend.requests if "/static/" in p and s == 200]
        assert any(p.endswith(".css") or ".css?" in p or "/css/" in p for p in assets), assets
        assert any(".js" in p for p in assets), assets
        assert failures == [] and elsewhere == [], (failures, elsewhere)
    finally:
        page.close()


def test_tunnel_ui_login_live_temperatures_upload_print_and_plugin_tab(rig, browser, tmp_path):
    page, failures, elsewhere = tunnelled_page(browser, rig)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        browser_login(page, rig.frontend.url, *ADMIN)
        page.wait_for_function("window.OctoPrint && OctoPrint.coreui && OctoPrint.coreui.startedUp",
                               timeout=60000)
        screenshot(page, "tunnel_ui_logged_in.png")
        # SockJS over ws.tunnel: the temperature history grows live.
        assert any(m == "WS" and p.startswith("/sockjs/") for m, p, _ in rig.frontend.requests)
        history = ("() => { const t = OctoPrint.coreui.viewmodels.temperatureViewModel.temperatures;"
                   " return t && t.tool0 ? t.tool0.actual.length : 0; }")
        page.wait_for_function("({})() > 0".format(history), timeout=30000)
        first = page.evaluate(history)
        page.wait_for_function("n => ({})() > n".format(history), arg=first + 2, timeout=30000)
        page.click("#temp_link a")
        page.wait_for_selector("#temperature-graph canvas, #temperature-graph", state="visible",
                               timeout=30000)
        page.wait_for_timeout(1500)
        screenshot(page, "tunnel_ui_temperature_tab.png")

        # A file uploads through the tunnel (a multipart POST with its CSRF token).
        gcode = tmp_path / UPLOAD_NAME
        gcode.write_text(print_gcode(300, sleep_ms=100))
        page.set_input_files("#gcode_upload", str(gcode))
        assert wait_for(lambda: rig.api("GET", "/api/files/local/" + UPLOAD_NAME).status_code == 200, 60)

        # The print starts from the file list.
        entry = page.locator("#files .gcode_files .entry", has_text=UPLOAD_NAME)
        entry.wait_for(state="visible", timeout=30000)
        entry.locator("[title='Load and Print']").first.click()
        assert wait_for(lambda: rig.printer_state() in ("Printing", "Starting"), 60), rig.printer_state()
        page.wait_for_timeout(1000)
        screenshot(page, "tunnel_ui_printing.png")

        # The plugin's own tab, with its frame (once detection has one).
        assert wait_for(lambda: rig.api("GET", "/plugin/tsd/frame.jpg").status_code == 200, 90)
        page.click("#tab_plugin_tsd_link > a")
        page.wait_for_selector("#tsd_tab", state="visible", timeout=30000)
        # The tab fetches frame.jpg through the tunnel and shows it (a blob URL).
        page.wait_for_function("""() => { const img = document.getElementById('tsd_tab_frame');
            return img && img.complete && img.naturalWidth > 0 && img.offsetWidth > 0; }""",
                               timeout=60000)
        assert any("/plugin/tsd/frame.jpg" in p and s == 200 for _, p, s in rig.frontend.requests)
        page.wait_for_timeout(1000)
        screenshot(page, "tunnel_ui_plugin_tab.png")
        assert failures == [] and elsewhere == [], (failures, elsewhere)
        assert errors == [], errors
    finally:
        rig.api("POST", "/api/job", json={"command": "cancel"})
        page.close()


@pytest.fixture(scope="module")
def autologin_rig(tmp_path_factory):
    with tunnelled_octoprint(tmp_path_factory, "tunnel-ui-autologin", octoprint_settings=AUTOLOGIN) as linked:
        yield linked


def test_tunnel_ui_autologin_never_applies_through_the_tunnel(autologin_rig, browser):
    rig = autologin_rig
    local = browser.new_page(viewport={"width": 1400, "height": 1000})
    page, failures, elsewhere = tunnelled_page(browser, rig)
    try:
        # The premise: a browser on the printer itself is in without a password.
        local.goto(rig.instance.url + "/", wait_until="domcontentloaded")
        local.wait_for_selector("#navbar_show_settings", state="visible", timeout=60000)
        # Through the tunnel: OctoPrint's login page, and no session.
        page.goto(rig.frontend.url + "/", wait_until="networkidle")
        page.wait_for_selector("#login-user", state="visible", timeout=60000)
        assert page.locator("#navbar_show_settings").count() == 0
        screenshot(page, "tunnel_ui_autologin_login_page.png")
        me = page.evaluate("() => fetch('/api/currentuser').then(r => r.json())")
        assert me["name"] is None, me
        assert failures == [] and elsewhere == [], (failures, elsewhere)
        assert requests.get(rig.instance.url + "/", timeout=30, allow_redirects=False).status_code == 200
    finally:
        page.close()
        local.close()
