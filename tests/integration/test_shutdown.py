# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint stops promptly on SIGTERM with the plugin busy: printing, the
helper running, a camera stream open. OctoPrint calls the plugins'
on_shutdown() from an atexit handler, after Python has joined every
non-daemon thread, so a plugin thread that waits for on_shutdown() would keep
OctoPrint alive until it is killed (it did: 30 s, then SIGKILL)."""

import os
import signal
import sys
import time

import requests

import helper_models
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, wait_for
from webcam_sim import WebcamSim


def test_sigterm_stops_octoprint_and_the_helper_quickly(tmp_path):
    frames = helper_models.write_color_frames(str(tmp_path / "frames"), frames=2)
    model = helper_models.write_color_model(str(tmp_path))
    sim = WebcamSim(frames_dir=frames, fps=10).start()
    instance = OctoPrintInstance(str(tmp_path / "octoprint"), python=sys.executable,
                                 env=dict(os.environ, TSD_TIME_SCALE="0.05"))
    instance.prepare(users=[ADMIN + (True,)], extra_plugin_settings={
        "classicwebcam": {"stream": sim.stream_url},
        "tsd": {"model_config": model, "frame_interval": 10},
    })
    instance.start()
    try:
        headers = {"X-Api-Key": instance.create_api_key(*ADMIN)}

        def api(method, path, **kwargs):
            return requests.request(method, instance.url + path, headers=headers, timeout=30,
                                    **kwargs)

        assert api("POST", "/api/connection", json={"command": "connect", "port": "VIRTUAL"}).ok
        assert wait_for(lambda: api("GET", "/api/printer").ok, 60)
        gcode = "G28\n" + "G4 P200\nG1 X10 Y10\n" * 500
        assert api("POST", "/api/files/local", files={"file": ("s.gcode", gcode)}).ok
        assert api("POST", "/api/files/local/s.gcode", json={"command": "select",
                                                            "print": True}).ok
        helper = wait_for(lambda: ((api("GET", "/api/plugin/tsd").json().get("detect") or {})
                                   .get("helper") or {}).get("pid"), 60)
        assert helper, api("GET", "/api/plugin/tsd").json()["detect"]
        started = time.monotonic()
        os.kill(instance.process.pid, signal.SIGTERM)
        instance.process.wait(20)
        took = time.monotonic() - started
        assert took < 10, took
        # The helper goes with it (its stdin closes, or on_shutdown stops it).
        assert wait_for(lambda: not os.path.exists("/proc/{}".format(helper)) or
                        open("/proc/{}/stat".format(helper)).read().split()[2] == "Z", 10)
    finally:
        instance.stop()
        sim.stop()
