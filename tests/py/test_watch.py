# SPDX-License-Identifier: AGPL-3.0-or-later
"""The watcher (octoprint_tsd/watch.py) with real native parts: frames from the
simulated webcam through _tsd.Camera, detections from the real tsd-helper
supervised by _tsd.Detector, decisions from _tsd.Decider. Only OctoPrint is
replaced, by a recording host. Each helper failure must be reported and then
recovered from, without the watcher stopping."""

import logging
import os
import stat
import threading
import time

import pytest

import helper_models
from octoprint_tsd import bridge, watch
from webcam_sim import WebcamSim

pytestmark = pytest.mark.skipif(not bridge.native_available(), reason="native module missing")

# An AddressSanitizer build of the helper (suite asan-py) reserves terabytes of
# address space for its shadow memory: it cannot start under RLIMIT_AS.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
FAST_DETECTOR = {"deadline_ms": 5000 if UNDER_ASAN else 1500,
                 "start_timeout_ms": 15000 if UNDER_ASAN else 3000, "backoff_min_ms": 100,
                 "backoff_max_ms": 400, "memory_limit_mb": -1 if UNDER_ASAN else 0}


class Host:
    def __init__(self, camera_url, model_config, stream=False, action="pause"):
        self.config = {
            "camera": {"name": "sim", "display_name": "Sim", "url": camera_url, "stream": stream},
            "ca_file": None, "interval_s": 10, "action": action, "sensitivity": 1.0,
            "model_config": model_config, "enabled": True,
            "detector_options": dict(FAST_DETECTOR),
        }
        self.printing = True
        self.actions = []
        self.warnings = []
        self.updates = []
        self.lock = threading.Lock()

    def watch_config(self):
        return dict(self.config)

    def is_printing(self):
        return self.printing

    def failure_action(self, action, summary, jpeg, detections):
        self.actions.append((action, summary))

    def failure_warning(self, summary, jpeg, detections):
        self.warnings.append(summary)

    def publish(self, info):
        with self.lock:
            self.updates.append(info)
            del self.updates[:-50]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("watch"))
    frames = helper_models.write_color_frames(os.path.join(work, "frames"), frames=4)
    config = helper_models.write_color_model(work)
    sim = WebcamSim(frames_dir=frames, fps=20).start()
    yield {"work": work, "config": config, "sim": sim}
    sim.stop()


@pytest.fixture
def sim(material):
    material["sim"].configure(scene="print", truncate=False)
    yield material["sim"]
    material["sim"].configure(scene="print", truncate=False)


def make_watcher(host, time_scale=0.01, helper=None):
    return watch.Watcher(host, logging.getLogger("test-watch"), helper_path=helper,
                         time_scale=time_scale)


def watching_a_print(material, sim):
    """(host, a started watcher of a print, past the decider's grace period)"""
    host = Host(sim.snapshot_url, material["config"])
    watcher = make_watcher(host)
    watcher.on_print_started()
    watcher.start()
    if not wait_for(lambda: watcher.detections_ok >= 35):
        watcher.stop()
        pytest.fail("no 35 detections: %s" % watcher.info())
    return host, watcher


def test_a_failure_is_acted_on_once_per_episode_and_rearmed_after_resume(material, sim):
    host, watcher = watching_a_print(material, sim)
    try:
        assert host.actions == [] and watcher.state == watch.STATE_WATCHING
        sim.configure(scene="spaghetti")
        assert wait_for(lambda: host.actions, 10)
        assert host.actions[0][0] == "pause" and watcher.state == watch.STATE_PAUSED
        ok = watcher.detections_ok
        assert wait_for(lambda: watcher.detections_ok >= ok + 20)
        assert len(host.actions) == 1  # never repeated while paused
        # Resumed with the failure still in view: a new episode, acted on again.
        watcher.on_print_resumed()
        assert wait_for(lambda: len(host.actions) == 2, 10)
        # "Looks fine": the episode ends, the grace period starts again, and
        # the bending factor is halved for the rest of the print.
        assert watcher.looks_fine() == 0.5
        watcher.on_print_resumed()
        sim.configure(scene="print")
        ok = watcher.detections_ok
        assert wait_for(lambda: watcher.detections_ok >= ok + 40)
        assert len(host.actions) == 2
        info = watcher.info()
        assert info["bending_factor"] == 0.5 and info["state"] == watch.STATE_WATCHING
        assert info["helper"]["state"] == "running" and info["helper"]["starts"] == 1
        assert len(watcher.history_points()) > 40
    finally:
        watcher.stop()


def test_notify_only_reports_without_pausing(material, sim):
    host = Host(sim.snapshot_url, material["config"], action="notify")
    watcher = make_watcher(host)
    watcher.on_print_started()
    watcher.start()
    try:
        assert wait_for(lambda: watcher.detections_ok >= 35)
        sim.configure(scene="spaghetti")
        assert wait_for(lambda: host.actions, 10)
        assert host.actions[0][0] == "notify" and watcher.state == watch.STATE_FAILING
        ok = watcher.detections_ok
        assert wait_for(lambda: watcher.detections_ok >= ok + 10)
        assert len(host.actions) == 1
    finally:
        watcher.stop()


def test_not_printing_grabs_frames_but_does_not_detect(material, sim):
    host = Host(sim.snapshot_url, material["config"])
    host.printing = False
    watcher = make_watcher(host)
    watcher.start()
    try:
        assert wait_for(lambda: watcher.frames >= 5)
        assert watcher.detections_ok == 0 and watcher.state == watch.STATE_IDLE
        assert watcher.latest[0][:2] == b"\xff\xd8"
    finally:
        watcher.stop()


def test_detection_turned_off_grabs_frames_and_never_detects(material, sim):
    sim.configure(scene="spaghetti")
    host = Host(sim.snapshot_url, material["config"])
    host.config["enabled"] = False
    watcher = make_watcher(host)
    watcher.on_print_started()
    watcher.start()
    try:
        assert wait_for(lambda: watcher.frames >= 40)
        assert watcher.detections_ok == 0 and host.actions == []
        assert watcher.state == watch.STATE_DISABLED and "turned off" in watcher.detail
        assert watcher.info()["helper"] is None  # never started
    finally:
        watcher.stop()


def test_helper_killed_between_frames_is_reported_and_restarted(material, sim):
    host = Host(sim.snapshot_url, material["config"])
    watcher = make_watcher(host, time_scale=0.02)
    watcher.on_print_started()
    watcher.start()
    try:
        health = wait_for(lambda: (watcher.info()["helper"] or {}).get("pid"))
        os.kill(health, 9)
        assert wait_for(lambda: watcher.detection_errors >= 1, 10)
        assert wait_for(lambda: (watcher.info()["helper"] or {}).get("starts", 0) >= 2, 10)
        ok = watcher.detections_ok
        assert wait_for(lambda: watcher.detections_ok >= ok + 3, 10)
        info = watcher.info()
        assert info["helper"]["crashes"] >= 1
        assert info["helper_error"] is None and info["state"] == watch.STATE_WATCHING
    finally:
        watcher.stop()


def test_frames_the_shared_helper_answers_late_are_skipped_not_errors(material, sim):
    """Shared mode (TSD_SHARED_HELPER): a frame the shared helper cannot score
    within this instance's deadline comes back "late"; the watcher counts it
    and goes on, it is not a helper failure. A 20 ms deadline leaves nothing
    after the shared helper's margin for the way back: once the helper has
    scored the first frame (with the start timeout), every frame is late."""
    import tempfile
    import shutil

    host = Host(sim.snapshot_url, material["config"])
    base = tempfile.mkdtemp(prefix="tsd-w-")
    host.config["detector_options"].update(shared_dir=os.path.join(base, "s"), deadline_ms=20,
                                           shared_idle_exit_s=2)
    watcher = make_watcher(host, time_scale=0.02)
    watcher.on_print_started()
    watcher.start()
    try:
        assert wait_for(lambda: watcher.detections_ok >= 1, 20)
        assert wait_for(lambda: watcher.frames_late >= 3, 20)
        info = watcher.info()
        assert info["frames_late"] >= 3
        # On a loaded machine a 20 ms wait may run out before the late answer
        # arrives (a timeout, which is a failure); a late frame never is one.
        assert info["helper_error"] is None or "timeout" in info["helper_error"], info
        assert info["detection_errors"] <= info["frames"] - info["frames_late"] - 1
    finally:
        watcher.stop()
        shutil.rmtree(base, ignore_errors=True)


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_a_hung_helper_is_reported_and_never_blocks_the_loop(material, sim, tmp_path):
    hung = write_script(str(tmp_path / "hung-helper"), "exec sleep 600")
    host = Host(sim.snapshot_url, material["config"])
    watcher = make_watcher(host, time_scale=0.02, helper=hung)
    watcher.on_print_started()
    watcher.start()
    try:
        detail = wait_for(lambda: "timeout" in (watcher.helper_error or ""), 40)
        assert detail, watcher.info()
        assert watcher.state == watch.STATE_ERROR
        # Frames keep coming while the helper is in trouble (each new hung
        # helper holds one frame for at most the start timeout).
        frames = watcher.frames
        start_s = FAST_DETECTOR["start_timeout_ms"] / 1000.0
        assert wait_for(lambda: watcher.frames >= frames + 2, 2 * start_s + 10)
        assert watcher.info()["helper"]["timeouts"] >= 1
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 5


def test_helper_killed_mid_frame_is_reported_and_the_next_one_works(material, sim, tmp_path):
    # The first helper takes a frame and never answers (it is killed while
    # the frame is in flight); every later start is the real helper.
    marker = tmp_path / "started-once"
    helper = write_script(str(tmp_path / "flaky-helper"),
                          'if [ -e "{}" ]; then exec "{}" "$@"; fi\n'
                          'touch "{}"\nexec sleep 600'.format(marker, bridge.helper_path(), marker))
    host = Host(sim.snapshot_url, material["config"])
    host.config["detector_options"] = dict(FAST_DETECTOR, start_timeout_ms=60000,
                                           deadline_ms=60000)
    watcher = make_watcher(host, time_scale=0.02, helper=helper)
    watcher.on_print_started()
    watcher.start()
    try:
        pid = wait_for(lambda: marker.exists() and (watcher.info()["helper"] or {}).get("pid"), 15)
        time.sleep(0.3)  # the frame is written; the answer is due
        assert watcher.detections_ok == 0
        os.kill(pid, 9)
        assert wait_for(lambda: "crashed" in (watcher.helper_error or "") or watcher.detections_ok, 15)
        assert wait_for(lambda: watcher.detections_ok >= 3, 20)
        health = watcher.info()["helper"]
        assert health["crashes"] == 1 and health["last_signal"] == 9 and health["starts"] == 2
        assert watcher.info()["helper_error"] is None
    finally:
        watcher.stop()


def test_a_bad_model_file_is_a_clear_error(material, sim, tmp_path):
    config = helper_models.write_config(str(tmp_path / "broken.yaml"),
                                        str(tmp_path / "missing.cfg"),
                                        str(tmp_path / "missing.weights"), 64)
    host = Host(sim.snapshot_url, config)
    watcher = make_watcher(host)
    watcher.on_print_started()
    watcher.start()
    try:
        assert wait_for(lambda: "config" in (watcher.helper_error or ""), 15)
        assert "missing.cfg" in watcher.helper_error or "model" in watcher.helper_error
        assert watcher.info()["helper"]["config_errors"] >= 1
        assert host.actions == []
    finally:
        watcher.stop()


def test_an_oversized_frame_is_refused_and_the_helper_goes_on(material, sim, tmp_path):
    with open(material["config"]) as f:
        text = f.read()
    small = str(tmp_path / "small.yaml")
    with open(small, "w") as f:
        f.write(text + "max_frame_bytes: 1024\n")
    host = Host(sim.snapshot_url, small)
    watcher = make_watcher(host)
    watcher.on_print_started()
    watcher.start()
    try:
        assert wait_for(lambda: "refused" in (watcher.helper_error or ""), 15)
        health = watcher.info()["helper"]
        assert health["refused"] >= 1 and health["starts"] == 1 and health["state"] == "running"
    finally:
        watcher.stop()


def test_bad_frames_and_an_unreachable_camera_are_reported(material, sim):
    sim.configure(truncate=True)
    host = Host(sim.snapshot_url, material["config"])
    watcher = make_watcher(host)
    watcher.start()
    try:
        assert wait_for(lambda: "not a valid JPEG" in (watcher.camera_error or ""), 15)
        assert watcher.state == watch.STATE_ERROR and watcher.detections_ok == 0
        sim.configure(truncate=False)
        host.printing = False
        assert wait_for(lambda: watcher.camera_error is None and watcher.state == watch.STATE_IDLE, 15)
        host.config["camera"] = dict(host.config["camera"], url="http://127.0.0.1:9/snapshot")
        assert wait_for(lambda: "refused" in (watcher.camera_error or ""), 15)
    finally:
        watcher.stop()


def test_a_relative_url_tries_its_candidates_and_keeps_the_one_that_works(material, sim):
    # OctoPi: /webcam/ is served on port 80 (haproxy), not on OctoPrint's port.
    host = Host(sim.snapshot_url, material["config"])
    host.printing = False
    host.config["camera"]["urls"] = ["http://127.0.0.1:9/webcam/?action=snapshot", sim.snapshot_url]
    watcher = make_watcher(host)
    watcher.start()
    try:
        assert wait_for(lambda: watcher.frames >= 3, 15)
        info = watcher.info()
        assert info["camera"]["url"] == sim.snapshot_url and info["camera_error"] is None
        # Once proven, a failing camera is retried in place, not swapped.
        sim.configure(truncate=True)
        assert wait_for(lambda: watcher.camera_error, 15)
        assert watcher.info()["camera"]["url"] == sim.snapshot_url
    finally:
        sim.configure(truncate=False)
        watcher.stop()


def test_webcam_choice_and_relative_urls():
    cams = watch.webcam_choices([
        {"name": "classic", "displayName": "Classic", "compat": {"stream": "/webcam/?action=stream",
                                                                "snapshot": ""}},
        {"name": "none", "displayName": "No URLs", "compat": None},
        {"name": "ext", "displayName": "", "compat": {"stream": "", "snapshot": "https://cam/s.jpg"}},
    ])
    assert [c["name"] for c in cams] == ["classic", "ext"]
    assert cams[1]["display_name"] == "ext"
    assert watch.pick_webcam(cams, "ext")["snapshot"] == "https://cam/s.jpg"
    assert watch.pick_webcam(cams, "gone")["name"] == "classic"
    assert watch.pick_webcam([], "x") is None
    assert watch.resolve_webcam_url("/webcam/?action=stream", 5000) == [
        "http://127.0.0.1:5000/webcam/?action=stream", "http://127.0.0.1/webcam/?action=stream"]
    assert watch.resolve_webcam_url("https://cam/x", 5000) == ["https://cam/x"]
    assert watch.resolve_webcam_url("ftp://cam/x", 5000) == []
    assert watch.resolve_webcam_url("", 5000) == []


def test_annotate_draws_on_the_frame(material, sim):
    jpeg, width, height, _ = bridge.new_camera(sim.snapshot_url).grab()
    detections = [{"confidence": 0.9, "box": [10, 10, 100, 80]}]
    annotated = bridge.annotate_jpeg(jpeg, detections)
    assert annotated[:2] == b"\xff\xd8" and annotated != jpeg
    with pytest.raises(ValueError):
        bridge.annotate_jpeg(jpeg, [{"box": "x"}])
    with pytest.raises(bridge.TsdError):
        bridge.annotate_jpeg(jpeg[: len(jpeg) // 2], detections)
    del width, height


def test_parity5_a_resume_from_the_app_ends_the_episode(material, sim):
    """The owner resumed from the server's app after this plugin paused: the
    same failure, still in view, never pauses the print a second time."""
    host, watcher = watching_a_print(material, sim)
    try:
        sim.configure(scene="spaghetti")
        assert wait_for(lambda: host.actions, 10)
        watcher.owner_resumed()    # the server's resume, then OctoPrint's event
        watcher.on_print_resumed()
        ok = watcher.detections_ok
        assert wait_for(lambda: watcher.detections_ok >= ok + 80, 40)
        assert len(host.actions) == 1
        assert watcher.state == watch.STATE_WARNING
        # A new print is a new episode.
        watcher.on_print_ended()
        watcher.on_print_started()
        assert wait_for(lambda: len(host.actions) == 2, 20)
    finally:
        watcher.stop()
