# SPDX-License-Identifier: AGPL-3.0-or-later
"""`make demo` as a new user meets it (issue 15, item 7): a busy port, a start
of OctoPrint that failed on it, then the demo twice in a row in the same
state folder. Each run is scripts/demo.py --smoke, the whole loop (print,
spaghetti on camera, pause) with the shipped detector; about 2 minutes each.

Before: the second run kept the first run's webcam URL (a dead port) and
never paused; a run after the failed start came up in OctoPrint's safe mode
and died with KeyError: 'printer'; a busy port gave a bare traceback.
"""

import os
import socket
import subprocess
import sys

from octoprint_instance import OctoPrintInstance, free_port
from tsd_testing import output_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "scripts", "demo.py")
RUN_TIMEOUT = 420


def run_demo(basedir, port, timeout=RUN_TIMEOUT):
    env = dict(os.environ, PORT=str(port))
    env.pop("TSD_TIME_SCALE", None)   # the demo sets its own
    done = subprocess.run([sys.executable, DEMO, "--smoke", "--basedir", basedir], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr


def keep(name, output):
    with open(os.path.join(output_dir("demo"), name), "w") as f:
        f.write(output)


def occupy(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_parity7_demo_runs_twice_and_after_a_failed_start(tmp_path):
    basedir = str(tmp_path / "demo" / "octoprint")
    port = free_port()
    blocker = occupy(port)
    try:
        # A busy port: said before anything starts, with a port to use instead.
        code, output = run_demo(basedir, port, timeout=120)
        keep("busy-port.log", output)
        assert code == 2, output
        assert "Port {} on 127.0.0.1 is in use".format(port) in output, output
        assert "PORT=" in output and "make demo" in output, output
        assert "Traceback" not in output, output
        # What the old demo did on that port: OctoPrint fails to bind and
        # leaves its marker, so that the next start would be in safe mode.
        failed = OctoPrintInstance(basedir, port=port, python=sys.executable)
        failed.prepare(users=[("demo", "spaghetti", True)])
        try:
            failed.start(timeout=90)
            raise AssertionError("OctoPrint started on a busy port")
        except RuntimeError:
            pass
        finally:
            failed.stop()
        assert os.path.exists(failed.incomplete_startup_marker)
    finally:
        blocker.close()

    # After the failed start, then again in the same folder (a new webcam port).
    for name in ("after-failed-start", "second-run"):
        code, output = run_demo(basedir, port)
        keep(name + ".log", output)
        assert code == 0, output
        assert "demo smoke check: ok" in output, output
        assert "paused by The Spaghetti Detective" in output, output
        assert "KeyError" not in output and "Traceback" not in output, output
        if name == "after-failed-start":
            assert "not in safe mode" in output, output
        else:
            assert "not in safe mode" not in output, output   # the first run finished
        assert not os.path.exists(os.path.join(basedir, ".incomplete_startup"))
