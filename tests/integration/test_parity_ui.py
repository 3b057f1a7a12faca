# SPDX-License-Identifier: AGPL-3.0-or-later
"""The tab explains a pause, and it is in the tab bar (issue 15, items 8, 9).

A real OctoPrint with its virtual printer, the simulated webcam with the
colour frames of tests/helper_models.py (healthy frames score 0, spaghetti
frames about 10) and the colour model, action "pause". Time is scaled by
TSD_TIME_SCALE = 0.05 as in test_detect.py: the grace period takes 15 s.

Item 8: once the print is paused, the tab shows the frame that paused it
with its boxes (not the newest frame), says which line the score crossed,
and plots the Obico gauge (thirds for ok / warning / failure) with the
action on it; "Live" goes back to the newest frame. Screenshots of both go
to $TSD_TEST_OUTPUT/screenshots.
Item 9: at 1400 px (and 1280 px) the tab's link is in the tab bar, not in
OctoPrint's overflow ("tabdrop") menu.
"""

import os
import sys
import time

import pytest
import requests

import helper_models
from octoprint_instance import OctoPrintInstance
from test_detect import gcode_file   # a print that lasts minutes on the virtual printer
from tsd_testing import ADMIN, keep_octoprint_logs, output_dir, ready_virtual_printer, wait_for
from webcam_sim import WebcamSim

TIME_SCALE = 0.05
GRACE_S = 30 * 10 * TIME_SCALE
GCODE_NAME = "parity-ui.gcode"


class Rig:
    def __init__(self, instance, sim, api_key):
        self.instance = instance
        self.url = instance.url
        self.sim = sim
        self.api_key = api_key

    def api(self, method, path, **kwargs):
        return requests.request(method, self.url + path, headers={"X-Api-Key": self.api_key},
                                timeout=30, **kwargs)

    def printer_state(self):
        return self.api("GET", "/api/printer").json().get("state", {}).get("text")

    def detect(self):
        return self.api("GET", "/api/plugin/tsd").json()["detect"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("parity-ui"))
    frames = helper_models.write_color_frames(os.path.join(work, "frames"))
    model_config = helper_models.write_color_model(work)
    sim = WebcamSim(frames_dir=frames, fps=10).start()
    basedir = os.path.join(work, "octoprint")
    env = dict(os.environ, TSD_TIME_SCALE=str(TIME_SCALE))
    instance = OctoPrintInstance(basedir, python=sys.executable, env=env)
    try:
        instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings={
            "classicwebcam": {"snapshot": sim.snapshot_url, "stream": sim.stream_url},
            "tsd": {"model_config": model_config, "frame_interval": 10, "action": "pause"},
        })
        instance.start()
        rig = Rig(instance, sim, instance.create_api_key(*ADMIN))
        ready_virtual_printer(rig, GCODE_NAME, gcode_file())
        yield rig
    finally:
        instance.stop()
        sim.stop()
        keep_octoprint_logs(basedir, "parity-ui")


def login(page, url):
    page.goto(url + "/", wait_until="domcontentloaded")
    page.fill("#login-user", ADMIN[0])
    page.fill("#login-password", ADMIN[1])
    page.click("#login-button")
    page.wait_for_selector("#tabs", state="visible", timeout=60000)
    page.wait_for_selector("#tab_plugin_tsd_link a", state="attached", timeout=30000)
    # tabdrop moves what does not fit once the UI has started.
    page.wait_for_function("window.OctoPrint && OctoPrint.coreui && OctoPrint.coreui.startedUp",
                           timeout=60000)
    page.wait_for_timeout(500)


def tab_in_bar(page):
    """Whether the tab's link is a visible item of the tab bar itself."""
    return page.evaluate("""() => {
        const li = document.getElementById('tab_plugin_tsd_link');
        if (!li) { return 'missing'; }
        if (li.closest('.tabdrop')) { return 'overflow'; }
        const r = li.getBoundingClientRect();
        return li.parentElement.id === 'tabs' && r.width > 0 && r.height > 0 ? 'bar' : 'hidden';
    }""")


@pytest.mark.parametrize("width", [1400, 1280])
def test_parity9_tab_is_in_the_tab_bar(rig, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        login(page, rig.url)
        assert tab_in_bar(page) == "bar"
        link = page.locator("#tab_plugin_tsd_link > a")
        assert link.text_content().strip() == "TSD"
        assert link.get_attribute("title") == "The Spaghetti Detective"
        # The icon is drawn (Font Awesome loaded): a glyph before the name.
        before = page.evaluate("""() => getComputedStyle(
            document.querySelector('#tab_plugin_tsd_link > a'), '::before')""" +
                               """.getPropertyValue('font-family')""")
        assert "Font Awesome" in before
        if width == 1400:
            page.screenshot(path=os.path.join(output_dir("screenshots"), "parity9_tab_bar_1400.png"),
                            clip={"x": 0, "y": 0, "width": width, "height": 160})
    finally:
        page.close()


def test_parity8_paused_tab_keeps_the_frame_that_paused_it(rig, browser):
    rig.sim.configure(scene="print")
    response = rig.api("POST", "/api/files/local/" + GCODE_NAME,
                       json={"command": "select", "print": True})
    assert response.status_code == 204, response.text
    errors = []
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        assert wait_for(lambda: rig.printer_state() == "Printing", 60)
        login(page, rig.url)
        page.click("#tab_plugin_tsd_link > a")
        page.wait_for_selector("#tsd_tab", state="visible", timeout=30000)
        time.sleep(GRACE_S + 3)
        assert rig.printer_state() == "Printing"
        rig.sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.printer_state() == "Paused", 60)
        assert wait_for(lambda: rig.detect()["state"] == "paused", 15)
        detect = rig.detect()
        evidence = detect["evidence"]
        assert evidence["action"] == "pause" and evidence["verdict"] == "pause"
        assert evidence["detections"] and evidence["adjusted"] > evidence["pause_at"]
        assert evidence["normalized_p"] >= 2 / 3
        # The frame endpoint serves it (to those who may see the webcam).
        frame = rig.api("GET", "/plugin/tsd/frame.jpg?evidence=1")
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        assert frame.headers["X-Frame-Seq"] == str(evidence["seq"])
        anonymous = requests.get(rig.url + "/plugin/tsd/frame.jpg?evidence=1", timeout=10)
        assert anonymous.status_code in (401, 403)

        # While paused the tab shows the triggering frame, with its boxes.
        page.wait_for_function(
            "document.getElementById('tsd_tab_frame').getAttribute('data-view') === 'evidence'"
            " && document.getElementById('tsd_tab_frame').getAttribute('data-seq') === '{}'".format(
                evidence["seq"]), timeout=30000)
        boxes = int(page.locator("#tsd_tab_overlay").get_attribute("data-boxes"))
        assert boxes == len(evidence["detections"]) > 0
        assert page.locator("#tsd_tab_evidence").is_visible()
        title = page.locator("#tsd_tab_evidence_title").text_content()
        assert "paused the print" in title and "frame {}".format(evidence["frame"]) in title
        reason = page.locator("#tsd_tab_evidence_reason").text_content()
        assert "Score {:.2f} was above".format(evidence["adjusted"]) in reason
        if evidence["adjusted"] > 0.78 * 1.75:
            assert "the fixed line 1.36" in reason, reason
        else:   # the band rule: the line moved with the short-term mean
            assert "the moving line {:.2f}".format(evidence["pause_at"]) in reason, reason
        # The plot: the gauge's three bands, the action marked on it.
        page.wait_for_selector("#tsd_tab_plot line.tsd-plot-action", state="attached", timeout=10000)
        assert page.locator("#tsd_tab_plot rect.tsd-plot-band").count() == 3
        labels = page.locator("#tsd_tab_plot text.tsd-plot-label").all_text_contents()
        assert {"ok", "warning", "failure"} <= set(labels), labels
        action = [label for label in labels if label.startswith("paused")]
        assert action == ["paused: score {:.2f} > {:.2f}".format(
            evidence["adjusted"], evidence["pause_at"])], labels
        page.evaluate("() => { if (window.PNotify && PNotify.removeAll) { PNotify.removeAll(); } }")
        page.wait_for_timeout(800)
        shots = output_dir("screenshots")
        page.screenshot(path=os.path.join(shots, "parity8_paused_evidence.png"), full_page=True)

        # A healthy camera now: "Live" shows the newest frame; the evidence stays.
        rig.sim.configure(scene="print")
        page.click("#tsd_tab_view_live")
        page.wait_for_function(
            "document.getElementById('tsd_tab_frame').getAttribute('data-view') === 'live'"
            " && parseInt(document.getElementById('tsd_tab_frame').getAttribute('data-seq'), 10) > {}"
            .format(evidence["seq"]), timeout=30000)
        assert not page.locator("#tsd_tab_evidence").is_visible()
        page.wait_for_timeout(800)
        page.screenshot(path=os.path.join(shots, "parity8_paused_live.png"), full_page=True)
        page.click("#tsd_tab_view_evidence")
        page.wait_for_function(
            "document.getElementById('tsd_tab_frame').getAttribute('data-view') === 'evidence'",
            timeout=30000)
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()
        rig.sim.configure(scene="print")
        rig.api("POST", "/api/job", json={"command": "cancel"})
