# SPDX-License-Identifier: AGPL-3.0-or-later
"""Detection end to end, and frames from the camera: a real OctoPrint with its
virtual printer and this plugin, the simulated webcam (tests/webcam_sim.py)
as OctoPrint's classic webcam, the real tsd-helper supervised by the native
core, and the TLS reference server the printer is linked to.

The model is the colour model of tests/helper_models.py: it reports one
detection per grid cell holding red strands, so the simulated camera's
"print" frames (no red) score 0 and its "spaghetti" frames about 10. Time is
scaled by TSD_TIME_SCALE = 0.05: one frame every 0.5 s stands for one every
10 s, so the first 30 frames of a print (the grace period) take 15 s.
"""

import os
import re
import sys
import time

import pytest
import requests

import helper_models
from octoprint_tsd import bridge
from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, keep_octoprint_logs, print_gcode, ready_virtual_printer, rss_mb, wait_for
from webcam_sim import WebcamSim

TOKEN = "f0e1d2c3b4a5968778695a4b"
TIME_SCALE = 0.05
GRACE_S = 30 * 10 * TIME_SCALE  # 30 frames of 10 s, scaled


def gcode_file(lines=1500):
    """A print that lasts minutes on the virtual printer."""
    return print_gcode(lines, sleep_ms=100)


class Rig:
    def __init__(self, instance, server, sim, api_key):
        self.instance = instance
        self.server = server
        self.sim = sim
        self.api_key = api_key

    def api(self, method, path, **kwargs):
        return requests.request(method, self.instance.url + path,
                                headers={"X-Api-Key": self.api_key}, timeout=30, **kwargs)

    def status(self):
        return self.api("GET", "/api/plugin/tsd").json()

    def detect(self):
        return self.status()["detect"]

    def printer_state(self):
        return self.api("GET", "/api/printer").json().get("state", {}).get("text")

    def set_tsd(self, **values):
        response = self.api("POST", "/api/settings", json={"plugins": {"tsd": values}})
        assert response.status_code == 200, response.text

    def set_webcam(self, snapshot, stream):
        response = self.api("POST", "/api/settings", json={
            "plugins": {"classicwebcam": {"snapshot": snapshot, "stream": stream}}})
        assert response.status_code == 200, response.text

    def log(self):
        with open(self.instance.octoprint_log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def rss_mb(self):
        return rss_mb(self.instance.process.pid)

    def start_print(self):
        response = self.api("POST", "/api/files/local/detect-test.gcode",
                            json={"command": "select", "print": True})
        assert response.status_code == 204, response.text
        assert wait_for(lambda: self.printer_state() == "Printing", 60)

    def end_print(self):
        self.api("POST", "/api/job", json={"command": "cancel"})
        assert wait_for(lambda: self.printer_state() == "Operational", 60)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("detect"))
    frames = helper_models.write_color_frames(os.path.join(work, "frames"))
    model_config = helper_models.write_color_model(work)
    sim = WebcamSim(frames_dir=frames, fps=10).start()
    pki = make_pki(os.path.join(work, "pki"))
    server = ReferenceServer([TOKEN], pki=pki).start()
    basedir = os.path.join(work, "octoprint")
    os.makedirs(os.path.join(basedir, "data", "tsd"))
    assert bridge.save_token(os.path.join(basedir, "data", "tsd"),
                             "https://localhost:{}".format(server.port), TOKEN, "Detect") is None
    env = dict(os.environ, TSD_TIME_SCALE=str(TIME_SCALE))
    instance = OctoPrintInstance(basedir, python=sys.executable, env=env)
    instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings={
        "classicwebcam": {"snapshot": sim.snapshot_url, "stream": sim.stream_url},
        "tsd": {"ca_file": pki["ca"], "model_config": model_config, "frame_interval": 10,
                "action": "pause"},
    })
    instance.start()
    try:
        rig = Rig(instance, server, sim, instance.create_api_key(*ADMIN))
        ready_virtual_printer(rig, "detect-test.gcode", gcode_file())
        assert wait_for(lambda: server.live(TOKEN) == 1, 30)
        yield rig
    finally:
        instance.stop()
        server.stop()
        sim.stop()
        keep_octoprint_logs(basedir, "detect")


def test_frames_arrive_from_the_configured_webcam_while_idle(rig):
    detect = wait_for(lambda: (lambda d: d if d and d["frames"] >= 3 else None)(rig.detect()), 30)
    assert detect["state"] == "idle", detect
    assert detect["camera"]["url"] == rig.sim.snapshot_url
    assert detect["camera"]["stream"] is False
    # The live view serves the newest frame, and only to a logged-in user.
    frame = rig.api("GET", "/plugin/tsd/frame.jpg")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    assert requests.get(rig.instance.url + "/plugin/tsd/frame.jpg", timeout=10).status_code in (401, 403)
    # Idle: no uploads and no detections.
    time.sleep(2)
    assert rig.server.pics == []
    assert rig.detect()["detections_ok"] == 0


def test_uploads_follow_the_server_cadence(rig):
    rig.sim.configure(scene="print")
    rig.start_print()
    try:
        # Printing, nobody watching: one upload every 120 s (scaled: 6 s).
        assert wait_for(lambda: len(rig.server.pics) >= 1, 20)
        start = time.monotonic()
        count = len(rig.server.pics)
        time.sleep(10)
        unwatched = len(rig.server.pics) - count
        assert 1 <= unwatched <= 2, unwatched
        # Someone opens the printer in the app: at once, with viewing_boost.
        rig.server.send(TOKEN, {"remote_status": {"viewing": True}})
        boosted = wait_for(lambda: [p for p in rig.server.pics
                                    if p.fields.get("viewing_boost") == "true"], 5)
        assert boosted and boosted[0].jpeg[:2] == b"\xff\xd8"
        # While viewed: every 10 s (scaled: 0.5 s).
        count = len(rig.server.pics)
        time.sleep(5)
        watched = len(rig.server.pics) - count
        assert 6 <= watched <= 12, watched
        rig.server.send(TOKEN, {"remote_status": {"viewing": False, "should_watch": False}})
        upload = rig.status()["upload"]
        assert upload["failed"] == 0 and upload["posted"] >= unwatched + watched
        del start
    finally:
        rig.end_print()
    # Not printing: nothing more is posted.
    time.sleep(1)
    count = len(rig.server.pics)
    time.sleep(3)
    assert len(rig.server.pics) == count


def pauses_in_log(rig):
    return len(re.findall(r"pausing for a detected failure", rig.log()))


def test_a_clean_print_is_never_paused(rig):
    rig.set_tsd(action="pause")
    rig.sim.configure(scene="print")
    before = rig.detect()["actions_taken"]
    rig.start_print()
    try:
        time.sleep(GRACE_S * 2 + 5)
        detect = rig.detect()
        assert rig.printer_state() == "Printing"
        assert detect["state"] == "watching", detect
        assert detect["actions_taken"] == before
        assert detect["last"]["p"] == 0 and detect["last"]["verdict"] == "ok"
        assert detect["detections_ok"] >= 30
    finally:
        rig.end_print()


def test_a_failing_print_is_paused_exactly_once(rig):
    rig.set_tsd(action="pause")
    rig.sim.configure(scene="print")
    before = rig.detect()["actions_taken"]
    pauses = pauses_in_log(rig)
    events = len(rig.server.printer_events)
    rig.start_print()
    try:
        time.sleep(GRACE_S + 2)
        assert rig.printer_state() == "Printing"
        rig.sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.printer_state() == "Paused", 30)
        assert wait_for(lambda: rig.detect()["state"] == "paused", 10)
        # Still spaghetti, still paused: nothing more happens.
        time.sleep(5)
        detect = rig.detect()
        assert detect["actions_taken"] == before + 1
        assert pauses_in_log(rig) == pauses + 1
        assert detect["last"]["verdict"] == "pause" and detect["last"]["p"] > 5
        # The server was told once, with the frame annotated, as its own
        # AI failure alert (it fills in the class and title).
        new_events = wait_for(lambda: rig.server.printer_events[events:], 15)
        assert len(new_events) == 1
        event = new_events[0]
        assert event.fields["event_type"] == "FAILURE_ALERTED"
        assert "event_class" not in event.fields and "event_title" not in event.fields
        assert (event.event_class, event.event_title) == ("ERROR", "Possible Failure Detected")
        assert event.snapshot[:2] == b"\xff\xd8"
        # "Looks fine" ends the episode and lowers the bending factor.
        response = rig.api("POST", "/api/plugin/tsd", json={"command": "looks_fine"})
        assert response.status_code == 200 and response.json()["bending_factor"] == 0.5
        rig.sim.configure(scene="print")
        assert rig.api("POST", "/api/job", json={"command": "pause", "action": "resume"}).status_code == 204
        assert wait_for(lambda: rig.printer_state() == "Printing", 30)
        time.sleep(GRACE_S + 3)
        assert rig.printer_state() == "Printing"
        assert rig.detect()["actions_taken"] == before + 1
    finally:
        rig.sim.configure(scene="print")
        rig.end_print()


def test_parity5_a_resume_from_the_app_never_pauses_for_the_same_failure_again(rig):
    rig.set_tsd(action="pause")
    rig.sim.configure(scene="print")
    before = rig.detect()["actions_taken"]
    rig.start_print()
    try:
        time.sleep(GRACE_S + 2)
        rig.sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.printer_state() == "Paused", 30)
        # The owner looks in the app, judges it, and resumes from there.
        rig.server.send(TOKEN, {"commands": [{"cmd": "resume", "initiator": "user"}]})
        assert wait_for(lambda: rig.printer_state() == "Printing", 30)
        time.sleep(GRACE_S + 15)  # the same spaghetti, well past the grace period
        assert rig.printer_state() == "Printing"
        assert rig.detect()["actions_taken"] == before + 1
    finally:
        rig.sim.configure(scene="print")
        rig.end_print()


def test_notify_only_never_pauses(rig):
    rig.set_tsd(action="notify")
    rig.sim.configure(scene="print")
    before = rig.detect()["actions_taken"]
    pauses = pauses_in_log(rig)
    rig.start_print()
    try:
        time.sleep(GRACE_S + 2)
        rig.sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.detect()["state"] == "failing", 30)
        time.sleep(3)
        assert rig.printer_state() == "Printing"
        assert rig.detect()["actions_taken"] == before + 1
        assert pauses_in_log(rig) == pauses
    finally:
        rig.sim.configure(scene="print")
        rig.end_print()
        rig.set_tsd(action="pause")


# Each misbehaviour as query parameters of the stream URL: the simulated
# camera applies them to that connection (and to every reconnection).
MISBEHAVIOURS = [
    ("truncate", "truncate=1", r"\(invalid_jpeg\).*not valid JPEG"),
    ("wrong_boundary", "wrong_boundary=1", r"\((no_boundary|no_frames)\)"),
    ("wrong_content_type", "wrong_content_type=1", r"\(not_multipart\).*text/html"),
    ("stall", "stall=4&misbehave_after=1", None),
    ("garbage", "garbage=50&misbehave_after=1", r"\((too_big|no_frames|invalid_jpeg)\)"),
    ("close_mid_frame", "close_mid_frame=1&misbehave_after=1", r"\(closed\)"),
]


@pytest.mark.parametrize("name,query,reason", MISBEHAVIOURS, ids=[m[0] for m in MISBEHAVIOURS])
def test_a_misbehaving_stream_camera_leaves_the_plugin_running(rig, name, query, reason):
    # An MJPEG-only camera: the plugin keeps one connection open.
    rig.set_webcam("", rig.sim.stream_url)
    assert wait_for(lambda: (rig.detect()["camera"] or {}).get("url") == rig.sim.stream_url, 20)
    frames = rig.detect()["frames"]
    assert wait_for(lambda: rig.detect()["frames"] > frames + 2, 20)
    rss = rig.rss_mb()
    rig.set_webcam("", rig.sim.stream_url + "&" + query)
    if reason is not None:
        detect = wait_for(lambda: (lambda d: d if re.search(reason, d["camera_error"] or "") else None)(
            rig.detect()), 60)
        assert detect, rig.detect()
        assert detect["state"] == "error", detect
        assert "no frame from" in detect["detail"]
    else:
        time.sleep(8)
        assert rig.detect()["camera_error"] is None
    # OctoPrint answers throughout, and memory stays flat.
    assert rig.printer_state() == "Operational"
    assert rig.rss_mb() - rss < 30, (rss, rig.rss_mb())
    # Back to a good camera: frames again, the error cleared from the state.
    rig.set_webcam("", rig.sim.stream_url)
    frames = rig.detect()["frames"]
    detect = wait_for(lambda: (lambda d: d if d["frames"] > frames + 2 else None)(rig.detect()), 90)
    assert detect and detect["state"] == "idle", rig.detect()
    assert detect["camera_error"] is None
    stats = detect["camera_stats"]
    assert stats is not None and stats["memory"] <= 2 * 5 * 1024 * 1024 + 65536
