# SPDX-License-Identifier: AGPL-3.0-or-later
"""The faults, one function each, against one real OctoPrint printing on its
virtual printer, linked through a FaultProxy to the reference server, with
the simulated webcam and a FaultyHelper (tests/fault_rig.py). The fault
suite (tests/integration/test_faults.py) runs each once; the soak
(scripts/soak.py) runs the reconnects thousands of times.

Each fault: inject it, see the plugin's status say what happened, take it
away, and time how long the plugin needs to work again by itself
(FaultRun.recovery). The bound is the documented backoff cap (scaled, as
TSD_TIME_SCALE scales it) plus 5 s, plus the detection time of a fault that
can only be noticed by waiting (a silent link: the hang-up time; a hung
helper: its deadline).
"""

import contextlib
import json
import os
import signal
import sys
import time

import fault_rig
import helper_models
from octoprint_tsd import remote as remote_module
from octoprint_tsd import watch as watch_module
from remote_rig import TOKEN, linked_octoprint
from obico_refserver import make_pki
from tsd_testing import print_gcode, wait_for
from webcam_sim import WebcamSim

TIME_SCALE = 0.05
HELPER_BACKOFF_CAP_S = 60.0                     # SUPERV_DEFAULT_BACKOFF_MAX_MS (not scaled)
HELPER_DEADLINE_S = 10.0                        # SUPERV_DEFAULT_DEADLINE_MS
GRAB_READ_TIMEOUT_S = 10.0                      # GRAB_DEFAULT_READ_TIMEOUT_MS
FAULT_GCODE = "faults.gcode"
# The short form: every fault once, in this order (the disk is filled last,
# by disk_full(), which ends the print).
SHORT_FAULTS = [
    "server_down", "server_reconnect", "blackhole", "slow", "wrong_certificate", "token_revoked",
    "replaced", "bad_frames",
    "camera_refusing", "camera_stalling", "camera_garbage", "camera_resolution", "camera_disappearing",
    "helper_killed", "helper_hung", "helper_garbage", "helper_memory",
]


class FaultRun:
    def __init__(self, linked, proxy, sim, helper, disk, gcode, work, scale=TIME_SCALE):
        # The plugin's own backoff caps (octoprint_tsd), scaled as the plugin
        # scales them, plus 5 s.
        self.tunnel_bound = remote_module.TUNNEL_BACKOFF_CAP_S * scale + 5
        self.tunnel_hangup = max(5, int(remote_module.TUNNEL_HANGUP_AFTER_S * scale))
        self.camera_bound = watch_module.CAMERA_RETRY_MAX_S * scale + 5
        self.linked = linked
        self.proxy = proxy
        self.sim = sim
        self.helper = helper
        self.disk = disk
        self.gcode = gcode
        self.work = work
        self.recovery = {}     # fault -> seconds until working again
        self.seen = {}         # fault -> what the status said during the fault

    # ---- what the plugin says ------------------------------------------------------

    def status(self):
        return self.linked.status()

    def remote(self):
        return self.status()["remote"]

    def connects(self):
        tunnel = self.remote().get("tunnel") or {}
        return tunnel.get("connects", 0)

    def detect(self):
        return self.status()["detect"] or {}

    def record(self, fault, started, bound):
        took = time.monotonic() - started
        self.recovery[fault] = max(took, self.recovery.get(fault, 0.0))
        assert took <= bound, "{}: back after {:.1f} s, bound {:.1f} s".format(fault, took, bound)
        return took

    def wait_status(self, predicate, timeout):
        """The first status for which predicate is truthy (AssertionError if none)."""
        found = wait_for(lambda: (lambda s: s if predicate(s) else None)(self.status()), timeout, 0.1)
        assert found, "the status never showed it within {} s: {}".format(timeout, self.status())
        return found

    # ---- the link ------------------------------------------------------------------

    def wait_linked_again(self, fault, connects_before, started, bound=None):
        """Connected with a new connection, and a status reaches the server on it."""
        bound = self.tunnel_bound if bound is None else bound
        statuses = len(self.linked.server.statuses(TOKEN))
        assert wait_for(lambda: self.remote()["state"] == "connected"
                        and self.connects() > connects_before, bound + 5, 0.05), self.remote()
        assert wait_for(lambda: len(self.linked.server.statuses(TOKEN)) > statuses, bound + 10, 0.1)
        return self.record(fault, started, bound)

    def server_down(self, seconds=1.0):
        before = self.connects()
        self.proxy.set_mode(fault_rig.DOWN)
        shown = self.wait_status(lambda s: s["remote"]["state"] == "disconnected", 10)
        self.seen["server_down"] = shown["remote"]["detail"]
        time.sleep(seconds)
        self.proxy.set_mode(fault_rig.PASS)
        return self.wait_linked_again("server_down", before, time.monotonic())

    def server_reconnect(self):
        """One server restart as fast as it goes: connections reset, listener kept."""
        before = self.connects()
        started = time.monotonic()
        self.proxy.kill_connections()
        assert wait_for(lambda: self.connects() > before, self.tunnel_bound + 5, 0.02), self.remote()
        return self.record("server_reconnect", started, self.tunnel_bound)

    def blackhole(self):
        before = self.connects()
        self.proxy.set_mode(fault_rig.BLACKHOLE)
        started = time.monotonic()
        # Only the hang-up time can tell a silent link from a quiet one.
        shown = self.wait_status(lambda s: s["remote"]["state"] != "connected", self.tunnel_hangup * 3 + 5)
        assert time.monotonic() - started <= self.tunnel_hangup * 3 + 5
        self.seen["blackhole"] = shown["remote"]["detail"]
        self.proxy.set_mode(fault_rig.PASS)
        return self.wait_linked_again("blackhole", before, time.monotonic())

    def slow(self, seconds=None):
        """1 byte/s both ways: the link must not fall over for good, and
        OctoPrint must not wait on it (lag is measured around it)."""
        self.proxy.set_mode(fault_rig.SLOW)
        time.sleep(seconds if seconds is not None else self.tunnel_hangup * 3)
        self.seen["slow"] = self.remote()["state"]
        self.proxy.set_mode(fault_rig.PASS)
        started = time.monotonic()
        statuses = len(self.linked.server.statuses(TOKEN))
        # A status sent after the trickle ends reaches the server, on the
        # same connection or a new one.
        assert wait_for(lambda: self.remote()["state"] == "connected"
                        and len(self.linked.server.statuses(TOKEN)) > statuses,
                        self.tunnel_bound + self.tunnel_hangup + 10, 0.1), self.remote()
        return self.record("slow", started, self.tunnel_bound + self.tunnel_hangup)

    def wrong_certificate(self):
        before = self.connects()
        self.proxy.set_mode(fault_rig.WRONG_TLS)
        self.proxy.kill_connections()
        shown = self.wait_status(lambda s: "TLS" in (s["remote"].get("detail") or ""), self.tunnel_bound + 5)
        self.seen["wrong_certificate"] = shown["remote"]["detail"]
        assert self.connects() == before
        self.proxy.set_mode(fault_rig.PASS)
        return self.wait_linked_again("wrong_certificate", before, time.monotonic())

    def token_revoked(self):
        """The server refuses the token: the plugin says so and stops
        knocking; it is not a fault to recover from by itself (the owner
        links again), so the test lets the server accept it again and asks
        for a reconnect as the owner would."""
        server = self.linked.server
        server.refuse_all = True
        server.close(TOKEN, 1000, "revoked")
        shown = self.wait_status(lambda s: s["remote"]["state"] == "unauthorized"
                                 and s["link"].get("refused"), self.tunnel_bound + 5)
        self.seen["token_revoked"] = shown["link"].get("error")
        refused = server.refused_count
        time.sleep(self.tunnel_bound)
        assert server.refused_count == refused, "the plugin kept knocking with a refused token"
        server.refuse_all = False
        started = time.monotonic()
        assert self.linked.api("POST", "/api/plugin/tsd", json={"command": "reconnect"}).status_code == 204
        # A reconnect starts a new tunnel: its connects count from 0.
        took = self.wait_linked_again("token_revoked", 0, started)
        assert self.status()["link"].get("refused") is not True
        return took

    def replaced(self):
        """4321 from a second device: the plugin stays down and says so."""
        server = self.linked.server
        connects = server.connect_count
        server.close(TOKEN, 4321, "another device connected with the same token")
        shown = self.wait_status(lambda s: s["remote"]["state"] == "replaced", 10)
        self.seen["replaced"] = shown["remote"]["detail"]
        time.sleep(self.tunnel_bound)
        assert server.connect_count == connects, "the plugin fought the other device"
        started = time.monotonic()
        assert self.linked.api("POST", "/api/plugin/tsd", json={"command": "reconnect"}).status_code == 204
        return self.wait_linked_again("replaced", 0, started)

    def bad_frames(self):
        """Malformed and oversized frames: counted, ignored, the link stays."""
        before = self.connects()
        tunnel_before = self.remote()["tunnel"]
        server = self.linked.server
        server.send(TOKEN, "{not json")
        server.send(TOKEN, "[1, 2, 3]")
        server.send(TOKEN, "{" + '"x": "' + "y" * (4 * 1024 * 1024) + '"}')
        server.send(TOKEN, {"remote_status": {"viewing": False}})
        tunnel = wait_for(lambda: (lambda t: t if t["oversized"] > tunnel_before["oversized"]
                                   and t["malformed"] >= tunnel_before["malformed"] + 2 else None)(
                                       self.remote()["tunnel"]), 15, 0.1)
        assert tunnel, self.remote()
        self.seen["bad_frames"] = {k: tunnel[k] for k in ("malformed", "oversized")}
        assert self.connects() == before and self.remote()["state"] == "connected"
        self.recovery["bad_frames"] = 0.0

    # ---- the camera ----------------------------------------------------------------

    def wait_frames_again(self, fault, started, bound=None):
        bound = self.camera_bound if bound is None else bound
        frames = self.detect()["frames"]
        assert wait_for(lambda: (lambda d: d["frames"] > frames + 1 and d["camera_error"] is None)(
            self.detect()), bound + 5, 0.1), self.detect()
        return self.record(fault, started, bound)

    def camera_fault(self, fault, undo, waiting=0.0, **switches):
        """waiting: how long a request made during the fault may still wait
        after it ends (a stalled snapshot: until the grabber's read timeout)."""
        self.sim.configure(**switches)
        shown = self.wait_status(lambda s: s["detect"] and s["detect"]["camera_error"], 30)
        self.seen[fault] = shown["detect"]["camera_error"]
        undo()
        return self.wait_frames_again(fault, time.monotonic(), self.camera_bound + waiting)

    def camera_refusing(self):
        return self.camera_fault("camera_refusing", lambda: self.sim.configure(snapshot_status=200),
                                 snapshot_status=503)

    def camera_stalling(self):
        return self.camera_fault("camera_stalling", lambda: self.sim.configure(stall=0),
                                 waiting=GRAB_READ_TIMEOUT_S, stall=60)

    def camera_garbage(self):
        return self.camera_fault("camera_garbage", lambda: self.sim.configure(garbage=0), garbage=1)

    def camera_disappearing(self):
        self.sim.stop()
        shown = self.wait_status(lambda s: s["detect"] and s["detect"]["camera_error"], 30)
        self.seen["camera_disappearing"] = shown["detect"]["camera_error"]
        self.sim.start()
        return self.wait_frames_again("camera_disappearing", time.monotonic())

    def camera_resolution(self):
        """The camera comes back at another size: frames and detections go on."""
        ok = self.detect()["detections_ok"]
        self.sim.use_frames(os.path.join(self.work, "frames-640"))
        started = time.monotonic()
        assert wait_for(lambda: self.detect()["detections_ok"] > ok + 2, self.camera_bound + 5, 0.1), \
            self.detect()
        assert self.detect()["camera_error"] is None
        self.record("camera_resolution", started, self.camera_bound)
        self.sim.use_frames(os.path.join(self.work, "frames"))

    def camera_reconnect(self):
        """One camera reconnect as fast as it goes (the soak's unit)."""
        frames = self.detect()["frames"]
        self.sim.stop()
        self.sim.start()
        started = time.monotonic()
        assert wait_for(lambda: self.detect()["frames"] > frames, self.camera_bound + 5, 0.02)
        return self.record("camera_reconnect", started, self.camera_bound)

    # ---- the helper ----------------------------------------------------------------

    def helper_pids(self):
        return fault_rig.helper_pids(self.linked.instance.process.pid)

    def wait_detections_again(self, fault, started, bound):
        ok = self.detect()["detections_ok"]
        assert wait_for(lambda: (lambda d: d["detections_ok"] > ok and d["helper_error"] is None)(
            self.detect()), bound + 5, 0.1), self.detect()
        return self.record(fault, started, bound + 5)

    def helper_signal(self, fault, sig, bound):
        assert wait_for(self.helper_pids, 30), "no helper running"
        for pid in self.helper_pids():
            os.kill(pid, sig)
        started = time.monotonic()
        shown = self.wait_status(lambda s: s["detect"] and s["detect"]["helper_error"], bound + 5)
        self.seen[fault] = shown["detect"]["helper_error"]
        return self.wait_detections_again(fault, started, bound)

    def helper_killed(self):
        return self.helper_signal("helper_killed", signal.SIGKILL, HELPER_BACKOFF_CAP_S)

    def helper_hung(self):
        return self.helper_signal("helper_hung", signal.SIGSTOP, HELPER_DEADLINE_S + HELPER_BACKOFF_CAP_S)

    def helper_misbehaving(self, fault, mode):
        self.helper.set_mode(mode)
        for pid in self.helper_pids():
            os.kill(pid, signal.SIGKILL)
        shown = self.wait_status(lambda s: s["detect"] and s["detect"]["helper_error"]
                                 and s["detect"]["helper_error"] != self.seen.get("helper_killed"), 60)
        self.seen[fault] = shown["detect"]["helper_error"]
        self.helper.set_mode(fault_rig.HELPER_PASS)
        return self.wait_detections_again(fault, time.monotonic(), HELPER_BACKOFF_CAP_S)

    def helper_garbage(self):
        return self.helper_misbehaving("helper_garbage", fault_rig.HELPER_GARBAGE)

    def helper_memory(self):
        return self.helper_misbehaving("helper_memory", fault_rig.HELPER_MEMORY)

    def helper_restart(self):
        """One helper restart (the soak's unit): killed, then answering again."""
        ok = self.detect()["detections_ok"]
        for pid in self.helper_pids():
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        assert wait_for(lambda: self.detect()["detections_ok"] > ok + 1, HELPER_BACKOFF_CAP_S + 5, 0.02)
        return self.record("helper_restart", started, HELPER_BACKOFF_CAP_S + 5)

    # ---- what it stores --------------------------------------------------------------

    def stored(self):
        """The token file, the plugin's settings and the learned state, as bytes."""
        folder = os.path.join(self.linked.instance.basedir, "data", "tsd")
        found = {}
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.endswith(".tmp"):
                continue
            with contextlib.suppress(IsADirectoryError), open(os.path.join(folder, name), "rb") as f:
                found[name] = f.read()
        import yaml

        with open(os.path.join(self.linked.instance.basedir, "config.yaml")) as f:
            found["settings"] = json.dumps(yaml.safe_load(f)["plugins"]["tsd"], sort_keys=True)
        return found


    def assert_stored_intact(self, before):
        """Everything stored before is there, byte for byte; the link record
        (written when the server refused the token and accepted it again)
        says linked, not refused."""
        now = self.stored()
        for name, data in before.items():
            assert now.get(name) == data, "{} changed: {!r} -> {!r}".format(name, data[:200],
                                                                            (now.get(name) or b"")[:200])
        if "linked.json" in now:
            record = json.loads(now["linked.json"])
            assert not record.get("refused"), record


def write_frames(work):
    helper_models.write_color_frames(os.path.join(work, "frames"))
    helper_models.write_color_frames(os.path.join(work, "frames-640"), width=640, height=480)
    return helper_models.write_color_model(work)


# A long-term statistic written before OctoPrint starts: the plugin loads it
# and writes it back when a print ends (detection.py, detect-state.json).
SAVED_STATE = {"long_mean": 0.0125, "long_count": 40}


@contextlib.contextmanager
def fault_octoprint(tmp_path_factory, name, print_lines=3000, disk=True, time_scale=TIME_SCALE,
                    print_sleep_ms=100, octoprint_settings=None):
    """A FaultRun: OctoPrint with the loop-lag plugin and the faulty helper,
    linked through a FaultProxy, a colour-model detector watching the
    simulated webcam; the data folder on a small tmpfs where this system
    allows it (disk=True); FAULT_GCODE uploaded, not yet printing;
    octoprint_settings: top-level sections of its config.yaml."""
    work = str(tmp_path_factory.mktemp("faults-" + name))
    model_config = write_frames(work)
    sim = WebcamSim(frames_dir=os.path.join(work, "frames"), fps=10, poll_interval=0.01).start()
    wrong = make_pki(os.path.join(work, "wrong-pki"))
    helper = fault_rig.FaultyHelper(work, sys.executable)
    holder = {}

    def front(server):
        holder["proxy"] = fault_rig.FaultProxy(server.port, wrong_pki=wrong).start()
        return holder["proxy"].port

    def before_start(basedir):
        fault_rig.install_loop_lag_plugin(basedir)
        data = os.path.join(basedir, "data", "tsd")
        with open(os.path.join(data, "detect-state.json"), "w") as f:
            json.dump(SAVED_STATE, f)
        if disk and fault_rig.FullableFolder.available():
            holder["disk"] = fault_rig.FullableFolder(data)
            holder["disk"].mount()

    env = dict(os.environ, PYTHONPATH=helper.site)
    settings = {"classicwebcam": {"snapshot": sim.snapshot_url},
                "tsd": {"model_config": model_config, "frame_interval": 10, "action": "pause"}}
    gcode = print_gcode(print_lines, sleep_ms=print_sleep_ms)
    try:
        with linked_octoprint(tmp_path_factory, name, time_scale, settings, octoprint_settings, front=front,
                              env=env, before_start=before_start) as linked:
            assert linked.api("POST", "/api/files/local",
                              files={"file": (FAULT_GCODE, gcode)}).status_code == 201
            run = FaultRun(linked, holder["proxy"], sim, helper, holder.get("disk"), gcode, work,
                           time_scale)
            assert wait_for(lambda: run.remote()["state"] == "connected", 60), run.remote()
            try:
                yield run
            finally:
                with contextlib.suppress(Exception):
                    linked.api("POST", "/api/job", json={"command": "cancel"})
    finally:
        if "disk" in holder:
            holder["disk"].unmount()
        if "proxy" in holder:
            holder["proxy"].stop()
        sim.stop()


def start_print(run):
    linked = run.linked
    response = linked.api("POST", "/api/files/local/" + FAULT_GCODE, json={"command": "select", "print": True})
    assert response.status_code == 204, response.text
    assert wait_for(lambda: linked.printer_state() == "Printing", 60)
    # Detections flow while printing (the colour model sees no failure).
    assert wait_for(lambda: run.detect()["detections_ok"] >= 2, 60), run.detect()


def disk_full(run):
    """The data folder full while the plugin saves a new token and, at the
    print's end, its long-term statistics: each save fails with a clear
    error, the files it had stay whole, the link stays up."""
    linked = run.linked
    before = run.stored()
    run.disk.fill()
    try:
        code = linked.server.issue_code(user="faults", printer_name="Faults")
        response = linked.api("POST", "/api/plugin/tsd", json={
            "command": "link", "code": code, "server_url": "https://localhost:%d" % run.proxy.port})
        assert response.status_code == 400, response.text
        run.seen["disk_full_token"] = response.json().get("error")
        assert "could not be stored" in response.text, response.text
        linked.api("POST", "/api/job", json={"command": "cancel"})
        assert wait_for(lambda: linked.printer_state() == "Operational", 60)
        # The print's end saves detect-state.json: the status says it could not.
        shown = run.wait_status(lambda s: s["detect"].get("save_error"), 15)
        run.seen["disk_full_state"] = shown["detect"]["save_error"]
        assert "detect-state.json" in shown["detect"]["save_error"]
        run.assert_stored_intact(before)
        assert run.remote()["state"] == "connected"
        # No half-written file is left to take the space or be read later.
        folder = os.path.join(linked.instance.basedir, "data", "tsd")
        left = set(os.listdir(folder)) - set(before) - {".filler", "linked.json"}
        assert not left, left
        with open(linked.instance.octoprint_log, encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert "could not save detect-state.json" in log
    finally:
        run.disk.drain()
    # Space again: the next save works and the status says nothing is wrong.
    linked.api("POST", "/api/files/local/" + FAULT_GCODE, json={"command": "select", "print": True})
    assert wait_for(lambda: linked.printer_state() == "Printing", 60)
    linked.api("POST", "/api/job", json={"command": "cancel"})
    assert wait_for(lambda: linked.printer_state() == "Operational", 60)
    run.wait_status(lambda s: s["detect"].get("save_error") is None, 15)
