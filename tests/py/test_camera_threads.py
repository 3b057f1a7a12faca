# SPDX-License-Identifier: AGPL-3.0-or-later
"""_tsd.Camera used from two threads at once, as the plugin does: the watch
thread grabs from the stream while the status API reads stats() and the
shutdown path calls close() -- which also stops a snapshot grab in progress.

make test runs this file a second time against an extension built with
ThreadSanitizer (the tsan suite in scripts/test.sh): there, a data race
between grab() and stats() aborts the run even when nothing visibly breaks.
"""

import threading
import time

import pytest

from octoprint_tsd import _tsd
from webcam_sim import WebcamSim

COUNTERS = ("bytes", "frames", "frames_taken", "frames_replaced", "invalid_frames",
            "too_big", "skipped_bytes")


@pytest.fixture
def sim():
    # The camera drops the connection in the middle of every sixth frame, so
    # sessions end and are reopened by the grabbing thread while stats()
    # keeps reading.
    sim = WebcamSim(fps=60, width=160, height=120, close_mid_frame=True,
                    misbehave_after=5).start()
    yield sim
    sim.stop()


def grab_until(camera, stop, outcomes):
    while not stop.is_set():
        try:
            camera.grab(wait_ms=20)
            outcomes["frames"] += 1
        except _tsd.GrabError as exc:
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
            if exc.code == "interrupted":
                return


def test_sec05_stats_while_grabbing_from_another_thread(sim):
    camera = _tsd.Camera(sim.stream_url, stream=True, read_timeout_ms=2000,
                         frame_timeout_ms=2000)
    stop = threading.Event()
    outcomes = {"frames": 0}
    grabber = threading.Thread(target=grab_until, args=(camera, stop, outcomes))
    seen = []
    grabber.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            seen.append(camera.stats())
    finally:
        camera.close()  # from this thread, while grab() runs in the other
        grabber.join(10)
        stop.set()
    assert not grabber.is_alive(), "close() did not stop a running grab()"
    assert outcomes.get("interrupted") == 1
    assert outcomes["frames"] > 10
    assert outcomes.get("closed", 0) + outcomes.get("io", 0) >= 1  # sessions ended

    # The counters read while grabbing describe a live stream: they never
    # run backwards within a session, and frames were taken.
    assert any(stats["connected"] and stats["frames_taken"] > 0 for stats in seen)
    for before, after in zip(seen, seen[1:]):
        assert after["sessions"] >= before["sessions"]
        if after["sessions"] == before["sessions"]:
            for name in COUNTERS:
                assert after[name] >= before[name], (name, before, after)
        assert after["frames_taken"] <= after["frames"]
    final = camera.stats()
    assert final["sessions"] >= 2
    assert final["sessions"] >= seen[-1]["sessions"]


def grab_once(camera, outcome):
    started = time.monotonic()
    try:
        camera.grab()
        outcome["result"] = "frame"
    except _tsd.GrabError as exc:
        outcome["result"] = exc.code
    outcome["returned"] = time.monotonic()
    outcome["took"] = outcome["returned"] - started


@pytest.mark.parametrize("where", ["head", "body"])
def test_sec09_snapshot_close_interrupts_grab(where):
    # A camera that accepts the snapshot request and then stalls: /hang never
    # answers the head; stall=30 sends half of the JPEG and then nothing. The
    # grab's own deadlines are 20 s away, so only close() can end it soon.
    sim = WebcamSim(width=160, height=120).start()
    url = sim.url + "/hang?seconds=30" if where == "head" else sim.snapshot_url + "&stall=30"
    camera = _tsd.Camera(url, connect_timeout_ms=20000, read_timeout_ms=20000,
                         total_timeout_ms=20000)
    outcome = {}
    grabber = threading.Thread(target=grab_once, args=(camera, outcome))
    try:
        grabber.start()
        deadline = time.monotonic() + 5.0
        while sim.stats()["requests"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats()["requests"] == 1, "the grab never reached the camera"
        time.sleep(0.2)  # the request is answered (or not): the grab waits in poll()
        assert grabber.is_alive() and not outcome
        closed_at = time.monotonic()
        camera.close()  # from this thread, while grab() waits in the other
        grabber.join(5)
        assert not grabber.is_alive(), "close() did not stop a running snapshot grab()"
        assert outcome["returned"] - closed_at < 0.5, outcome
        assert outcome["result"] == "interrupted", outcome
        # A closed camera stays closed.
        with pytest.raises(_tsd.GrabError) as exc:
            camera.grab()
        assert exc.value.code == "interrupted"
    finally:
        camera.close()
        sim.stop()
        grabber.join(30)
