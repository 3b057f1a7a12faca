# SPDX-License-Identifier: AGPL-3.0-or-later
"""The demo: a real OctoPrint with its virtual printer and this plugin.

Needs no server, no camera and no internet. Run through `make demo`, which
installs what is missing first. Listens on 127.0.0.1:5000 unless PORT says
otherwise; state is kept in build/demo/ between runs.

  --smoke   start, check that the plugin and its native module are up, stop
"""

import argparse
import os
import signal
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from octoprint_instance import OctoPrintInstance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_USER = "demo"
DEMO_PASSWORD = "spaghetti"


def connect_virtual_printer(instance, api_key):
    headers = {"X-Api-Key": api_key}
    requests.post(
        instance.url + "/api/connection",
        json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200},
        headers=headers,
        timeout=10,
    ).raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = requests.get(instance.url + "/api/plugin/tsd", headers=headers, timeout=10).json()
        if state["printer"]["state"] == "OPERATIONAL":
            return state
        time.sleep(0.5)
    raise RuntimeError("the virtual printer did not become operational")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="start, check, stop")
    parser.add_argument("--basedir", default=os.path.join(REPO, "build", "demo", "octoprint"))
    args = parser.parse_args()

    port = int(os.environ.get("PORT") or 5000)
    instance = OctoPrintInstance(args.basedir, port=port)
    print("==> preparing OctoPrint in {}".format(instance.basedir), flush=True)
    instance.prepare(users=[(DEMO_USER, DEMO_PASSWORD, True)])
    print("==> starting OctoPrint on {} (log: {})".format(instance.url, instance.octoprint_log), flush=True)
    try:
        instance.start()
    except Exception as exc:
        print("OctoPrint did not start: {}".format(exc), file=sys.stderr)
        if os.path.exists(instance.log_path):
            with open(instance.log_path, errors="replace") as f:
                print("".join(f.readlines()[-30:]), file=sys.stderr)
        instance.stop()
        return 1

    try:
        api_key = instance.create_api_key(DEMO_USER, DEMO_PASSWORD, app="tsd-demo")
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
        print("  Settings:  the wrench icon > Plugins > The Spaghetti Detective")
        print()
        if args.smoke:
            print("demo smoke check: ok")
            return 0
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
    finally:
        print("==> stopping OctoPrint", flush=True)
        instance.stop()


if __name__ == "__main__":
    sys.exit(main())
