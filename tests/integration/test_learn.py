# SPDX-License-Identifier: AGPL-3.0-or-later
"""Learning this printer (issue 19): something in the scene that the
detector mistakes for a failure, marked "looks fine" once, stays quiet over
the next print, while a real failure elsewhere in the frame still pauses.

A real OctoPrint with its virtual printer, the simulated webcam serving the
learning scenes of tests/helper_models.py (a red object that never moves in
the top-left; red strands in the bottom-right) from two simulated cameras
that OctoPrint's one webcam is pointed at in turn, and the crop colour model with a signature output, so that the helper
reports every crop that holds red, with its appearance signature. Time is
scaled as in test_detect.py (a frame every 0.5 s stands for one every 10 s).
"""

import json
import os
import sys
import time

import pytest

import fault_rig
import helper_models
import test_detect as detect_test
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, ready_virtual_printer, wait_for
from webcam_sim import WebcamSim

TIME_SCALE = detect_test.TIME_SCALE
GRACE_S = detect_test.GRACE_S


class Rig(detect_test.Rig):
    """test_detect.py's rig with two simulated cameras and no server."""

    def __init__(self, instance, sims, api_key, basedir):
        super().__init__(instance, None, None, api_key)
        self.sims = sims
        self.basedir = basedir

    def command(self, name):
        return self.api("POST", "/api/plugin/tsd", json={"command": name})

    def use_camera(self, name):
        sim = self.sims[name]
        self.set_webcam(sim.snapshot_url, sim.stream_url)
        assert wait_for(lambda: (self.detect().get("camera") or {}).get("url") == sim.snapshot_url, 30)
        return sim


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("learn"))
    # "appears": a clean bed, then the object shows up; "failing": the
    # object all along, then strands elsewhere too.
    scenes = {
        "appears": ({"obj": False}, {"obj": True}),
        "failing": ({"obj": True}, {"obj": True, "strands": True}),
    }
    sims = {}
    for name, (calm, later) in scenes.items():
        frames = helper_models.write_learn_frames(os.path.join(work, name), calm, later)
        sims[name] = WebcamSim(frames_dir=frames, fps=10).start()
    onnx = helper_models.write_crops_onnx(work, signature=True)
    model_config = helper_models.write_crops_config(os.path.join(work, "crops.yaml"), onnx)
    basedir = os.path.join(work, "octoprint")
    env = dict(os.environ, TSD_TIME_SCALE=str(TIME_SCALE))
    instance = OctoPrintInstance(basedir, python=sys.executable, env=env)
    first = sims["appears"]
    instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings={
        "classicwebcam": {"snapshot": first.snapshot_url, "stream": first.stream_url},
        "tsd": {"model_config": model_config, "frame_interval": 10, "action": "pause"},
    })
    instance.start()
    try:
        rig = Rig(instance, sims, instance.create_api_key(*ADMIN), basedir)
        ready_virtual_printer(rig, "detect-test.gcode", detect_test.gcode_file())
        yield rig
    finally:
        instance.stop()
        for sim in sims.values():
            sim.stop()


def test_learned_object_stays_quiet_while_real_failure_still_pauses(rig):
    # 1. A clean print; then the red object comes into view and is taken
    #    for a failure: the print is paused.
    sim = rig.use_camera("appears")
    sim.configure(scene="print")
    rig.start_print()
    try:
        time.sleep(GRACE_S + 2)
        assert rig.printer_state() == "Printing"
        sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.printer_state() == "Paused", 30)
        # 2. The owner says it looks fine: what fired is learned, and kept
        #    in the plugin's data folder.
        response = rig.command("looks_fine")
        assert response.status_code == 200, response.text
        learned = wait_for(lambda: (lambda d: d if d["learned"] >= 2 else None)(rig.detect()), 10)
        assert learned, rig.detect()
        path = os.path.join(rig.basedir, "data", "tsd", "tsd-learned.json")
        with open(path) as f:
            assert len(json.load(f)["entries"]) == learned["learned"]
    finally:
        sim.configure(scene="print")
        rig.end_print()
    # 3. The next print, the object in view from the start (the same webcam
    #    of OctoPrint, now at another address): it stays quiet past the grace
    #    period and well beyond.
    sim = rig.use_camera("failing")
    sim.configure(scene="print")
    before = rig.detect()["actions_taken"]
    rig.start_print()
    try:
        time.sleep(GRACE_S * 2 + 5)
        detect = rig.detect()
        assert rig.printer_state() == "Printing"
        assert detect["actions_taken"] == before
        assert detect["suppressed"] > 0
        assert detect["last"]["p"] == 0, detect["last"]
        # 4. Real spaghetti elsewhere in the frame still pauses.
        sim.configure(scene="spaghetti")
        assert wait_for(lambda: rig.printer_state() == "Paused", 30)
        assert rig.detect()["actions_taken"] == before + 1
    finally:
        sim.configure(scene="print")
        rig.end_print()


def test_a_full_disk_keeps_what_was_learned(rig):
    """The data folder full when "looks fine" saves what it learned: the
    command answers, the plugin says it could not save, the file it had
    stays whole and no partial copy is left; what was learned is still used
    (the fault suite's disk-full fault covers the token and detect-state.json;
    its detector reports no signatures, so nothing there is learned). Once
    there is room again, the next print's start saves it."""
    if rig.detect()["learned"] == 0:
        pytest.skip("nothing learned (the first test did not run)")
    if not fault_rig.FullableFolder.available():
        pytest.skip("mounting a small tmpfs needs root here")
    folder = os.path.join(rig.basedir, "data", "tsd")
    path = os.path.join(folder, "tsd-learned.json")
    with open(path, "rb") as f:
        saved = f.read()
    learned = rig.detect()["learned"]
    complaints = rig.log().count("could not save what was learned")
    disk = fault_rig.FullableFolder(folder)
    disk.mount()
    try:
        names = set(os.listdir(folder))
        disk.fill()
        # Strands beside the learned object: a failure not learned yet.
        sim = rig.use_camera("failing")
        sim.configure(scene="print")
        rig.start_print()
        try:
            sim.configure(scene="spaghetti")
            assert wait_for(lambda: rig.printer_state() == "Paused", 30 + GRACE_S * 2)
            response = rig.command("looks_fine")
            assert response.status_code == 200, response.text
            assert wait_for(lambda: rig.detect()["learned"] > learned, 10), rig.detect()
            assert wait_for(lambda: rig.log().count("could not save what was learned") > complaints, 10)
            assert "tsd-learned.json" in (rig.detect().get("save_error") or "")
        finally:
            sim.configure(scene="print")
            rig.end_print()
        with open(path, "rb") as f:
            assert f.read() == saved
        assert set(os.listdir(folder)) - names == {".filler"}
        # Room again: the next print's start saves what the memory in use has.
        disk.drain()
        now = rig.detect()["learned"]
        rig.start_print()
        try:
            assert wait_for(lambda: rig.detect().get("save_error") is None, 10), rig.detect().get("save_error")
            with open(path, encoding="utf-8") as f:
                assert len(json.load(f)["entries"]) == now
            assert "saved what was learned, which an earlier save could not" in rig.log()
        finally:
            rig.end_print()
    finally:
        disk.drain()
        disk.unmount()


def test_forget_what_this_printer_learned(rig):
    if rig.detect()["learned"] == 0:
        pytest.skip("nothing learned (the first test did not run)")
    response = rig.command("forget_learned")
    assert response.status_code == 200, response.text
    assert response.json()["forgotten"] >= 2
    assert rig.detect()["learned"] == 0
    assert not os.path.exists(os.path.join(rig.basedir, "data", "tsd", "tsd-learned.json"))
