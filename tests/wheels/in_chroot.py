# SPDX-License-Identifier: AGPL-3.0-or-later
"""Runs inside the test chroot of tests/wheels, with the Python of the
OctoPrint virtualenv there (standard library, OctoPrint and the installed
plugin only). Prints one JSON object.

  frame JPEG        the installed native module and helper score one frame
                    with the shipped model, as the plugin does (bridge.py),
                    then tsd-helper --bench times the same frame (it runs
                    where serving cannot: qemu-user has no seccomp)
  update INDEX_URL  OctoPrint's software update for the plugin: its
                    pypi_release check against INDEX_URL (the stand-in for
                    PyPI) and, if a newer version is there, its pip updater
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import time

BENCH_REPEAT = 5


def frame(jpeg_path):
    from octoprint_tsd import bridge

    info = bridge.native_info()
    if not info["loaded"]:
        sys.exit("native module: " + info["error"])
    started = time.monotonic()
    probe = bridge.probe_helper(timeout=120)  # tsd-helper --version: loads its libraries
    probe_s = time.monotonic() - started
    if not probe["available"]:
        sys.exit("tsd-helper: " + probe["error"])
    result = {"native": info, "helper_version_s": probe_s}
    result.update(serve(bridge, jpeg_path))
    result["bench"] = bench(bridge, jpeg_path)
    print(json.dumps(result))


def serve(bridge, jpeg_path):
    with open(jpeg_path, "rb") as f:
        jpeg = f.read()
    started = time.monotonic()
    detector = bridge.new_detector(bridge.helper_path(), bridge.default_model_config(),
                                   start_timeout_ms=300000, deadline_ms=300000)
    try:
        try:
            detector.ping()  # returns once the helper has loaded the model
        except bridge.HelperError as exc:
            # Under qemu-user the helper cannot lock its seccomp sandbox
            # (qemu does not emulate seccomp), and refuses to serve.
            return {"refused": str(exc), "stderr": detector.health().get("stderr_tail")}
        start_s = time.monotonic() - started
        replies = []
        frames_started = time.monotonic()
        for _ in range(3):
            replies.append(json.loads(detector.detect(jpeg)))
        per_frame_s = (time.monotonic() - frames_started) / len(replies)
    finally:
        detector.stop()
    reply = replies[-1]
    score = bridge.new_decider().add_frame([float(d["confidence"]) for d in reply["detections"]])["p"]
    return {"helper_start_s": start_s, "per_frame_s": per_frame_s, "reply": reply, "p": score}


def bench(bridge, jpeg_path):
    """tsd-helper --bench on the installed helper and shipped model."""
    done = subprocess.run([bridge.helper_path(), "--bench", bridge.default_model_config(), jpeg_path,
                           "--repeat", str(BENCH_REPEAT)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=1200)
    result = {"returncode": done.returncode, "stderr": done.stderr.decode("utf-8", "replace")[-2000:],
              "repeat": BENCH_REPEAT}
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if done.returncode == 0 and len(lines) == 2:
        result["reply"], result["summary"] = json.loads(lines[0]), json.loads(lines[1])
    return result


def update(index_url):
    from octoprint.plugins.softwareupdate.updaters import pip as pip_updater
    from octoprint.plugins.softwareupdate.version_checks import pypi_release

    import octoprint_tsd

    # The only change: the check asks the stand-in instead of pypi.org.
    pypi_release.INDEX_URL = index_url.rstrip("/") + "/{package}"
    plugin = octoprint_tsd.TsdPlugin()
    before = importlib.metadata.version(octoprint_tsd.DISTRIBUTION_NAME)
    plugin._plugin_version = before
    check = plugin.get_update_information()[octoprint_tsd.PLUGIN_IDENTIFIER]
    information, is_current = pypi_release.get_latest("tsd", check)
    result = {"before": before, "information": information, "is_current": is_current}
    if not is_current:
        lines = []
        pip_updater.perform_update("tsd", check, information["remote"]["value"],
                                   log_cb=lambda out, prefix=None, stream=None: lines.extend(out))
        result["pip_log_tail"] = lines[-5:]
    print(json.dumps(result))


if __name__ == "__main__":
    {"frame": frame, "update": update}[sys.argv[1]](*sys.argv[2:])
