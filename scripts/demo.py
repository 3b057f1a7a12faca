# SPDX-License-Identifier: AGPL-3.0-or-later
"""The demo: a real OctoPrint with its virtual printer and this plugin,
watching a simulated webcam (tests/webcam_sim.py) through the shipped
detector.

It starts a print; the camera shows a healthy print, then the print turns
into spaghetti; the helper flags it and the plugin pauses the virtual
printer. Needs no server, no camera and no internet. Run through `make demo`,
which installs what is missing first. Listens on 127.0.0.1:5000 unless PORT
says otherwise; state is kept in build/demo/ between runs.

Time runs 10 times faster than in real use (TSD_TIME_SCALE=0.1): a frame
every second stands for one every 10 s, the rate the decision constants were
tuned for, so the grace period at the start of a print takes 30 s.

  --smoke   run the whole loop once, check that the print was paused, stop

Every run starts from the state the demo needs, whatever the last one left:
the webcam URLs of this run's camera, the plugin's settings, no safe mode
after a start that did not finish. A port in use is reported before
anything starts, with a free one to put in PORT=.
"""

import argparse
import os
import signal
import sys
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from octoprint_instance import OctoPrintInstance, port_in_use  # noqa: E402
from webcam_sim import WebcamSim  # noqa: E402

DEMO_USER = "demo"
DEMO_PASSWORD = "spaghetti"
TIME_SCALE = 0.1
HEALTHY_SECONDS = 45      # the healthy print on camera (the grace period is 30 s)
FAILURE_TIMEOUT = 120     # spaghetti on camera until the pause, at most


def demo_gcode(lines=3000):
    out = ["G28", "G90", "M82", "G1 Z0.3 F600", "G92 E0"]
    for i in range(lines):
        out.append("G1 X{} Y{} E{:.3f} F1200".format(20 + i % 80, 20 + (i * 7) % 80, i * 0.04))
        out.append("G4 P200")
    return "\n".join(out) + "\n"


def api(instance, api_key, method, path, **kwargs):
    response = requests.request(method, instance.url + path, headers={"X-Api-Key": api_key},
                                timeout=30, **kwargs)
    response.raise_for_status()
    return response


class DemoError(Exception):
    """Something the person running the demo should read, without a traceback."""


def printer_state(instance, api_key):
    return api(instance, api_key, "GET", "/api/printer").json()["state"]["text"]


def run_the_loop(instance, api_key, sim):
    """Prints, shows spaghetti, waits for the pause. True when paused by TSD."""
    api(instance, api_key, "POST", "/api/files/local",
        files={"file": ("tsd-demo.gcode", demo_gcode())})
    api(instance, api_key, "POST", "/api/files/local/tsd-demo.gcode",
        json={"command": "select", "print": True})
    print("==> printing tsd-demo.gcode; the camera shows a healthy print", flush=True)
    started = time.monotonic()
    spaghetti_at = None
    last = None
    while True:
        status = api(instance, api_key, "GET", "/api/plugin/tsd").json()
        detect = status.get("detect") or {}
        state = api(instance, api_key, "GET", "/api/printer").json()["state"]["text"]
        elapsed = time.monotonic() - started
        line = "    {:5.0f} s  printer: {:8s}  detector: {:9s} score {:>6}  {}".format(
            elapsed, state, detect.get("state", "?"),
            "{:.2f}".format((detect.get("last") or {}).get("adjusted", 0.0)),
            detect.get("detail") or "")
        key = line[13:]  # without the clock: a line when something changes
        if key != last:
            print(line, flush=True)
            last = key
        if sim.scene == "print" and elapsed > HEALTHY_SECONDS:
            print("==> the print turns into spaghetti on camera", flush=True)
            sim.configure(scene="spaghetti")
            spaghetti_at = time.monotonic()
        if state == "Paused" and detect.get("state") == "paused" and spaghetti_at is None:
            print("==> paused on a healthy print: a false alarm", flush=True)
            return False
        if state == "Paused" and detect.get("state") == "paused":
            print("==> paused by The Spaghetti Detective after {:.0f} s of spaghetti".format(
                time.monotonic() - spaghetti_at), flush=True)
            return True
        if spaghetti_at is not None and time.monotonic() - spaghetti_at > FAILURE_TIMEOUT:
            print("==> no pause within {} s of spaghetti (OctoPrint says {}; the detector: {})".format(
                FAILURE_TIMEOUT, state, detect.get("detail") or detect.get("state", "?")), flush=True)
            return False
        if state not in ("Printing", "Starting", "Paused", "Pausing"):
            print("==> the print ended before the failure ({})".format(state), flush=True)
            return False
        time.sleep(1)


def check_plugin_loaded(instance, api_key):
    """OctoPrint in safe mode runs without third-party plugins: say so."""
    server = api(instance, api_key, "GET", "/api/server").json()
    if server.get("safemode"):
        raise DemoError("OctoPrint started in safe mode ({}), without this plugin; see {}".format(
            server["safemode"], instance.octoprint_log))
    response = requests.get(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key},
                            timeout=30)
    if response.status_code == 404:
        raise DemoError("OctoPrint runs without The Spaghetti Detective plugin; see {}".format(
            instance.octoprint_log))
    response.raise_for_status()


def connect_virtual_printer(instance, api_key):
    api(instance, api_key, "POST", "/api/connection",
        json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = api(instance, api_key, "GET", "/api/plugin/tsd").json()
        if state["printer"]["state"] == "OPERATIONAL":
            return state
        time.sleep(0.5)
    raise DemoError("the virtual printer did not become operational; see {}".format(
        instance.octoprint_log))


def check_camera(instance, api_key, sim, timeout=60):
    """The plugin watches this run's camera, and frames arrive from it."""
    deadline = time.monotonic() + timeout
    detect = {}
    while time.monotonic() < deadline:
        detect = api(instance, api_key, "GET", "/api/plugin/tsd").json().get("detect") or {}
        camera = detect.get("camera") or {}
        if camera.get("url", "").startswith(sim.url) and detect.get("frames", 0) > 0:
            return
        time.sleep(0.5)
    raise DemoError("the plugin does not get frames from the demo's camera {} (its camera: {}; {})".format(
        sim.url, (detect.get("camera") or {}).get("url"), detect.get("detail") or detect.get("state")))


def suggest_port(port):
    for candidate in range(port + 1, port + 100):
        if not port_in_use(candidate):
            return candidate
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="start, check, stop")
    parser.add_argument("--basedir", default=os.path.join(REPO, "build", "demo", "octoprint"))
    args = parser.parse_args()

    try:
        port = int(os.environ.get("PORT") or 5000)
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError:
        print("PORT={} is not a port number (1-65535).".format(os.environ.get("PORT")), file=sys.stderr)
        return 2
    if port_in_use(port):
        free = suggest_port(port)
        print("Port {} on 127.0.0.1 is in use (another OctoPrint, or a demo still running?).".format(port),
              file=sys.stderr)
        if free:
            print("Run the demo on another port: PORT={} make demo".format(free), file=sys.stderr)
        return 2
    sim = WebcamSim(fps=5, width=640, height=480).start()
    print("==> simulated webcam at {}".format(sim.url), flush=True)
    env = dict(os.environ, TSD_TIME_SCALE=str(TIME_SCALE))
    instance = OctoPrintInstance(args.basedir, port=port, env=env)
    print("==> preparing OctoPrint in {}".format(instance.basedir), flush=True)
    unfinished = instance.prepare(users=[(DEMO_USER, DEMO_PASSWORD, True)], extra_plugin_settings={
        "classicwebcam": {"stream": sim.stream_url, "snapshot": sim.snapshot_url},
        "tsd": {"frame_interval": 10, "action": "pause", "detection_enabled": True},
    })
    if unfinished:
        print("==> an earlier start of OctoPrint did not finish; starting normally, not in safe mode",
              flush=True)
    print("==> starting OctoPrint on {} (log: {})".format(instance.url, instance.octoprint_log), flush=True)
    try:
        instance.start()
    except Exception as exc:
        print("OctoPrint did not start: {}".format(exc), file=sys.stderr)
        if os.path.exists(instance.log_path):
            with open(instance.log_path, errors="replace") as f:
                print("".join(f.readlines()[-30:]), file=sys.stderr)
        instance.stop()
        sim.stop()
        return 1

    try:
        api_key = instance.create_api_key(DEMO_USER, DEMO_PASSWORD, app="tsd-demo")
        check_plugin_loaded(instance, api_key)
        status = connect_virtual_printer(instance, api_key)
        native = status["native"]
        if not native["loaded"]:
            print("The plugin's native module did not load: {}".format(native["error"]), file=sys.stderr)
            return 1
        print()
        print("  The Spaghetti Detective demo is running.")
        print("  Open:      {}".format(instance.url))
        print("  Log in:    user '{}', password '{}'".format(DEMO_USER, DEMO_PASSWORD))
        print("  Plugin:    {} with native module _tsd {}".format(status["plugin_version"], native["version"]))
        print("  Printer:   OctoPrint's virtual printer, connected")
        print("  Camera:    simulated webcam at {}".format(sim.url))
        print("  Watch:     the 'TSD' tab (The Spaghetti Detective)")
        print("  Settings:  the wrench icon > Plugins > The Spaghetti Detective")
        print("  Time runs 10x faster than in real use.")
        print()
        check_camera(instance, api_key, sim)
        paused = run_the_loop(instance, api_key, sim)
        # Said only when OctoPrint itself says so, now.
        state = printer_state(instance, api_key)
        paused = paused and state == "Paused"
        if args.smoke:
            print("demo smoke check: {}".format(
                "ok" if paused else "FAILED (no pause; OctoPrint says {})".format(state)))
            return 0 if paused else 1
        print()
        if paused:
            print("  The print is paused. Resume or cancel it in OctoPrint; the TSD tab shows the")
            print("  frame that paused it. /control?scene=print on the camera ({})".format(sim.url))
            print("  shows a healthy print again.")
        else:
            print("  The demo did not pause the print (OctoPrint says {}). OctoPrint keeps running:".format(state))
            print("  look at the TSD tab and {}.".format(instance.octoprint_log))
        print("  Press Ctrl-C to stop.", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(True))
        while not stop and instance.process.poll() is None:
            time.sleep(0.5)
        if instance.process.poll() is not None:
            print("OctoPrint exited (status {}); see {}".format(instance.process.returncode, instance.log_path))
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    except (DemoError, requests.RequestException) as exc:
        print("The demo stopped: {}".format(exc), file=sys.stderr)
        return 1
    finally:
        print("==> stopping OctoPrint", flush=True)
        instance.stop()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
