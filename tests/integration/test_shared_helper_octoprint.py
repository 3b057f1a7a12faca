# SPDX-License-Identifier: AGPL-3.0-or-later
"""One detector per host with real OctoPrint (issue 14, part 3): two
instances print on their virtual printers and watch the simulated webcam;
one is started with TSD_SHARED_HELPER naming a folder, the other with a farm
file saying detection.shared_helper: true and XDG_RUNTIME_DIR above that
folder (where the setting puts it). Both are scored by
one tsd-helper-shared running one tsd-helper; the instance that started it
is stopped and started again, and the other goes on being scored by the
same shared helper meanwhile, which the restarted one joins again.

The model is the colour model of tests/helper_models.py, frames every 0.5 s
(TSD_TIME_SCALE 0.05, frame_interval 10). tests/py/test_shared_helper.py
covers the rest (flood, deadlines, crashes, refusals) with lighter clients.
"""

import os
import signal
import subprocess
import sys
import tempfile

import pytest
import requests

import helper_models
from octoprint_tsd.farm import SHARED_HELPER_SUBDIR
from octoprint_instance import OctoPrintInstance
from tsd_testing import (ADMIN, keep_octoprint_logs, print_gcode, ready_virtual_printer, shared_helper_pids,
                         wait_for)
from webcam_sim import WebcamSim

TIME_SCALE = 0.05


class Instance:
    def __init__(self, work, name, sim, model_config, shared_dir, farm_file=None):
        self.name = name
        self.basedir = os.path.join(work, name)
        env = dict(os.environ, TSD_TIME_SCALE=str(TIME_SCALE), TSD_SHARED_HELPER=shared_dir)
        if farm_file is not None:
            # The farm file's setting: the folder under XDG_RUNTIME_DIR.
            assert os.path.basename(shared_dir) == SHARED_HELPER_SUBDIR
            del env["TSD_SHARED_HELPER"]
            env.update(TSD_FARM_FILE=farm_file, XDG_RUNTIME_DIR=os.path.dirname(shared_dir))
        self.instance = OctoPrintInstance(self.basedir, python=sys.executable, env=env)
        self.instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings={
            "classicwebcam": {"snapshot": sim.snapshot_url, "stream": sim.stream_url},
            "tsd": {"model_config": model_config, "frame_interval": 10, "action": "notify"},
        })
        self.api_key = None

    def start(self):
        self.instance.start()
        self.api_key = self.instance.create_api_key(*ADMIN)

    def api(self, method, path, **kwargs):
        return requests.request(method, self.instance.url + path,
                                headers={"X-Api-Key": self.api_key}, timeout=30, **kwargs)

    def printer_state(self):
        return self.api("GET", "/api/printer").json().get("state", {}).get("text")

    def detect(self):
        return self.api("GET", "/api/plugin/tsd").json()["detect"]

    def start_print(self):
        ready_virtual_printer(self, "shared.gcode", print_gcode(3000, sleep_ms=100))
        response = self.api("POST", "/api/files/local/shared.gcode",
                            json={"command": "select", "print": True})
        assert response.status_code == 204, response.text
        assert wait_for(lambda: self.printer_state() == "Printing", 60)

    def scored(self, more_than=0):
        """The detect status once it has more than more_than answers."""
        return wait_for(lambda: (lambda d: d if d["detections_ok"] > more_than else None)(
            self.detect()), 60)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("shared-octoprint"))
    frames = helper_models.write_color_frames(os.path.join(work, "frames"))
    model_config = helper_models.write_color_model(work)
    sim = WebcamSim(frames_dir=frames, fps=10).start()
    sim.configure(scene="print")
    base = tempfile.mkdtemp(prefix="tsd-sho-")  # short: sun_path is 108 bytes
    shared_dir = os.path.join(base, SHARED_HELPER_SUBDIR)
    farm_file = os.path.join(work, "farm.yaml")
    with open(farm_file, "w") as f:
        f.write("version: 1\ndetection:\n  shared_helper: true\n")
    instances = [Instance(work, "shared-a", sim, model_config, shared_dir),
                 Instance(work, "shared-b", sim, model_config, shared_dir, farm_file=farm_file)]
    try:
        for instance in instances:
            instance.start()
            instance.start_print()
        yield instances, shared_dir
    finally:
        for instance in instances:
            instance.instance.stop()
            keep_octoprint_logs(instance.basedir, instance.name)
        sim.stop()
        for pid in shared_helper_pids(shared_dir):
            os.kill(pid, signal.SIGTERM)
        subprocess.run(["rm", "-rf", base], check=False)


def test_two_instances_share_one_detector_across_a_restart(farm):
    (a, b), shared_dir = farm
    first_a, first_b = a.scored(2), b.scored(2)
    server = first_a["helper"]["pid"]
    assert server > 0 and first_b["helper"]["pid"] == server
    with open("/proc/{}/cmdline".format(server), "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[0].endswith(b"/tsd-helper-shared") and shared_dir.encode() in argv
    # Not a child of either OctoPrint: it survives them.
    with open("/proc/{}/stat".format(server)) as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent not in (a.instance.process.pid, b.instance.process.pid)
    assert first_a["helper_error"] is None and first_b["helper_error"] is None

    # The instance that started it stops; the other goes on being scored.
    a.instance.stop()
    before = b.detect()["detections_ok"]
    during = b.scored(before + 3)
    assert during["helper"]["pid"] == server and during["helper_error"] is None

    # Back again, it joins the same shared helper.
    a.start()
    a.start_print()
    again = a.scored(1)
    assert again["helper"]["pid"] == server
    assert b.scored(b.detect()["detections_ok"] + 2)["helper"]["pid"] == server
