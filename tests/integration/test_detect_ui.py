# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Spaghetti Detective's tab in a real browser (Debian's Chromium driven
by Playwright), against its own OctoPrint: the simulated webcam as OctoPrint's
classic webcam, a tiny Darknet model for the helper, the virtual printer.

Checked: the newest frame is shown, the state line says "Idle" before a print
and a watching state during one, the frame counter moves, the score plot gets
points, "Looks fine" reaches the API for the admin, and a read-only user sees
the tab without the control buttons. The Detection settings list the webcam.
"""

import os
import sys

import pytest
import requests

import helper_models as hm
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, VIEWER, keep_octoprint_logs, output_dir, print_gcode, ready_virtual_printer
from webcam_sim import WebcamSim

TIME_SCALE = 0.5          # the watch thread sleeps frame_interval * 0.5 s
GCODE_NAME = "tsd-ui-test.gcode"
PRINTING_STATES = ("watching", "warning", "failing", "paused")
TAB = "#tab_plugin_tsd"


def gcode_file(lines=1500):
    """A print that lasts minutes on the virtual printer (G4 sleeps)."""
    return print_gcode(lines, sleep_ms=200, tool_temp=200, bed_temp=60)


class Setup:
    def __init__(self, instance, sim, api_key, model_config):
        self.instance = instance
        self.url = instance.url
        self.sim = sim
        self.api_key = api_key
        self.model_config = model_config

    def api(self, method, path, **kwargs):
        return requests.request(method, self.url + path, headers={"X-Api-Key": self.api_key},
                                timeout=30, **kwargs)

    def printer_state(self):
        response = self.api("GET", "/api/printer")
        if response.status_code != 200:
            return None
        return response.json().get("state", {}).get("text")


@pytest.fixture(scope="module")
def detect_ui(tmp_path_factory):
    sim = WebcamSim(scene="spaghetti", fps=5)
    sim.start()
    models = str(tmp_path_factory.mktemp("tsd-ui-model"))
    cfg, weights = hm.write_tiny_model(models)
    model_config = hm.write_config(os.path.join(models, "tiny.yaml"), cfg, weights, hm.TINY_SIDE)
    basedir = str(tmp_path_factory.mktemp("octoprint-detect-ui"))
    env = dict(os.environ)
    env["TSD_TIME_SCALE"] = str(TIME_SCALE)
    instance = OctoPrintInstance(basedir, python=sys.executable, env=env)
    try:
        instance.prepare(
            users=[ADMIN + (True,)],
            extra_plugin_settings={
                "classicwebcam": {"snapshot": sim.snapshot_url, "stream": sim.stream_url},
                # notify: the print goes on whatever the tiny model says.
                "tsd": {"model_config": model_config, "frame_interval": 1, "action": "notify"},
            },
        )
        # The viewer is read-only: status and webcam, no PRINT permission.
        done = instance._octoprint("user", "add", VIEWER[0], "--password", VIEWER[1],
                                   "--group", "readonly")
        assert done.returncode == 0, done.stdout
        instance.start()
        setup = Setup(instance, sim, instance.create_api_key(*ADMIN), model_config)
        ready_virtual_printer(setup, GCODE_NAME, gcode_file())
        yield setup
    finally:
        instance.stop()
        sim.stop()
        keep_octoprint_logs(basedir, "detect-ui")


def login(page, url, user, password):
    page.goto(url + "/", wait_until="domcontentloaded")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login-button")
    # The main UI replaces the login page once everything is loaded.
    page.wait_for_selector("#tabs", state="visible", timeout=60000)
    page.wait_for_selector("#tab_plugin_tsd_link a", state="attached", timeout=30000)


def open_tab(page):
    link = page.locator("#tab_plugin_tsd_link a")
    if not link.is_visible():
        # Tabs that do not fit in the bar sit in the "tabdrop" menu.
        page.click("#tabs .tabdrop > a.dropdown-toggle")
    link.click()
    page.wait_for_selector("#tsd_tab", state="visible", timeout=30000)


def state_text(page):
    return page.locator("#tsd_tab_state").text_content().strip()


def frames_count(page):
    text = page.locator("#tsd_tab_frames").text_content().strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else -1


def wait_frame_loaded(page, timeout=30000):
    page.wait_for_function(
        "(() => { const img = document.getElementById('tsd_tab_frame');"
        " return img && img.complete && img.naturalWidth > 0"
        " && img.offsetWidth > 0; })()",
        timeout=timeout,
    )


def close_notices(page):
    # Sticky failure notices sit over the top right of the page.
    page.evaluate("() => { if (window.PNotify && PNotify.removeAll) { PNotify.removeAll(); } }")
    page.wait_for_timeout(500)


def new_page(browser, errors):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def test_tab_idle_then_printing_as_admin(detect_ui, browser):
    errors = []
    page = new_page(browser, errors)
    try:
        login(page, detect_ui.url, *ADMIN)
        open_tab(page)
        wait_frame_loaded(page)
        # Not printing: frames for the view, no detection.
        page.wait_for_function(
            "document.querySelector('#tsd_tab_state').textContent.trim().startsWith('Idle')",
            timeout=30000)
        assert state_text(page) == "Idle: not printing"
        first = frames_count(page)
        assert first >= 1
        page.wait_for_function(
            "parseInt(document.querySelector('#tsd_tab_frames').textContent, 10) > {}".format(first),
            timeout=15000)
        assert page.locator("#tsd_tab_camera").text_content().strip()
        # Idle and logged in as admin: the buttons are there, Pause and
        # "Looks fine" disabled.
        assert page.locator("#tsd_tab_looks_fine").is_visible()
        assert not page.locator("#tsd_tab_pause").is_enabled()
        assert not page.locator("#tsd_tab_looks_fine").is_enabled()

        response = detect_ui.api("POST", "/api/files/local/" + GCODE_NAME,
                                 json={"command": "select", "print": True})
        assert response.status_code == 204, response.text
        page.wait_for_function(
            "{} .includes(document.querySelector('#tsd_tab_state').getAttribute('data-state'))".format(
                list(PRINTING_STATES)),
            timeout=60000)
        state = page.locator("#tsd_tab_state").get_attribute("data-state")
        assert state in PRINTING_STATES
        assert not state_text(page).startswith(("Idle", "Off", "Problem"))
        page.wait_for_function(
            "parseInt(document.getElementById('tsd_tab_plot').getAttribute('data-points'), 10) >= 2",
            timeout=30000)
        # The plot was drawn: the gauge line, its warning and failure lines
        # and its three bands.
        page.wait_for_selector("#tsd_tab_plot polyline.tsd-plot-line", state="attached", timeout=10000)
        assert page.locator("#tsd_tab_plot line.tsd-plot-threshold").count() == 2
        labels = page.locator("#tsd_tab_plot text.tsd-plot-label").all_text_contents()
        assert {"ok", "warning", "failure"} <= set(labels), labels
        # A frame with the detector's boxes (the tiny model always finds some).
        page.wait_for_function(
            "parseInt(document.getElementById('tsd_tab_overlay').getAttribute('data-boxes') || '0', 10) > 0",
            timeout=30000)
        assert page.locator("#tsd_tab_inference").text_content().strip().endswith("for the last frame")

        close_notices(page)
        looks_fine = page.locator("#tsd_tab_looks_fine")
        page.wait_for_function("!document.getElementById('tsd_tab_looks_fine').disabled", timeout=30000)
        assert page.locator("#tsd_tab_pause").is_enabled()
        with page.expect_response(lambda r: r.url.endswith("/api/plugin/tsd")
                                  and r.request.method == "POST") as info:
            looks_fine.click()
        assert info.value.status == 200
        assert "bending_factor" in info.value.json()
        page.wait_for_selector("#tsd_tab_message", state="visible", timeout=10000)
        assert "less sensitive" in page.locator("#tsd_tab_message").text_content()

        close_notices(page)
        page.wait_for_timeout(1500)   # a few more points and a fresh frame
        path = os.path.join(output_dir("screenshots"), "tsd_tab.png")
        page.screenshot(path=path, full_page=True)
        assert os.path.getsize(path) > 10000
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()


def test_viewer_sees_the_tab_without_controls(detect_ui, browser):
    errors = []
    page = new_page(browser, errors)
    try:
        login(page, detect_ui.url, *VIEWER)
        open_tab(page)
        wait_frame_loaded(page)
        page.wait_for_function(
            "document.querySelector('#tsd_tab_state').textContent.trim().length > 0", timeout=30000)
        assert not state_text(page).startswith("Off")
        page.wait_for_timeout(1000)  # the permissions are known by now
        looks_fine = page.locator("#tsd_tab_looks_fine")
        assert not (looks_fine.is_visible() and looks_fine.is_enabled())
        assert not page.locator("#tsd_tab_pause").is_visible()
        # The server agrees: no PRINT permission, no "Looks fine".
        session = detect_ui.instance.login(*VIEWER)
        response = session.post(detect_ui.url + "/api/plugin/tsd", json={"command": "looks_fine"},
                                timeout=30)
        assert response.status_code == 403
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()


def test_detection_settings(detect_ui, browser):
    errors = []
    page = new_page(browser, errors)
    try:
        login(page, detect_ui.url, *ADMIN)
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        page.wait_for_selector("#tsd_settings", state="visible", timeout=30000)
        assert page.locator("#tsd_detection_enabled").is_checked()
        assert page.locator("#tsd_model_config").input_value() == detect_ui.model_config
        assert page.locator("#tsd_frame_interval").input_value() == "1"
        # The webcam list comes from the status API (classicwebcam's camera).
        page.wait_for_function("document.querySelectorAll('#tsd_webcam option').length >= 1",
                               timeout=30000)
        options = page.locator("#tsd_webcam option")
        first = options.first.get_attribute("value")
        assert first
        assert page.locator("#tsd_webcam").input_value() == first
        page.wait_for_selector("#settings_dialog.in", timeout=10000)
        page.locator("#tsd_model_config").scroll_into_view_if_needed()
        page.wait_for_timeout(600)
        page.screenshot(path=os.path.join(output_dir("screenshots"), "tsd_settings_detection.png"))
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()


def test_tab_says_what_a_full_disk_kept_from_being_saved(detect_ui, browser):
    """The data folder full when a print ends: the tab shows that the
    detector's long-term statistics were not saved; once there is room, the
    next print's end saves them and the line goes away."""
    import fault_rig
    from tsd_testing import wait_for

    if not fault_rig.FullableFolder.available():
        pytest.skip("mounting a small tmpfs needs root here")

    def start_print():
        response = detect_ui.api("POST", "/api/files/local/" + GCODE_NAME, json={"command": "select", "print": True})
        assert response.status_code == 204, response.text
        assert wait_for(lambda: detect_ui.printer_state() == "Printing", 60)

    def end_print():
        detect_ui.api("POST", "/api/job", json={"command": "cancel"})
        assert wait_for(lambda: detect_ui.printer_state() == "Operational", 60)

    if detect_ui.printer_state() != "Printing":
        start_print()
    # Frames of this print make the long-term statistics that its end saves.
    assert wait_for(lambda: detect_ui.api("GET", "/api/plugin/tsd").json()["detect"]["frames"] > 3, 30)
    errors = []
    page = new_page(browser, errors)
    disk = fault_rig.FullableFolder(os.path.join(detect_ui.instance.basedir, "data", "tsd"))
    disk.mount()
    try:
        login(page, detect_ui.url, *ADMIN)
        open_tab(page)
        assert not page.locator("#tsd_tab_save_error_row").is_visible()
        disk.fill()
        end_print()
        page.wait_for_selector("#tsd_tab_save_error_row", state="visible", timeout=15000)
        assert "detect-state.json" in page.locator("#tsd_tab_save_error").text_content()
        close_notices(page)
        page.locator("#tsd_tab_save_error_row").scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(output_dir("screenshots"), "tsd_tab_not_saved.png"), full_page=True)
        disk.drain()
        start_print()
        assert wait_for(lambda: detect_ui.api("GET", "/api/plugin/tsd").json()["detect"]["frames"] > 3, 30)
        end_print()
        page.wait_for_selector("#tsd_tab_save_error_row", state="hidden", timeout=15000)
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()
        disk.drain()
        disk.unmount()
