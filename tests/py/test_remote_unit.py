# SPDX-License-Identifier: AGPL-3.0-or-later
"""The shim's side of the server link (octoprint_tsd/remote.py), with a mocked
printer and a fake tunnel; the dispatcher is the real native allow-list."""

import json
from unittest import mock

import pytest

from octoprint_tsd import bridge, remote


class FakeTunnel:
    def __init__(self):
        self.statuses = []
        self.sent = []

    def send_status(self, text):
        self.statuses.append(json.loads(text))
        return True

    def send(self, text):
        self.sent.append(json.loads(text))
        return True

    def stats(self):
        return {}

    def stop(self):
        pass


@pytest.fixture
def link():
    plugin = mock.Mock(name="plugin")
    plugin._printer.get_current_data.return_value = {
        "state": {"text": "Printing", "flags": {"printing": True}},
        "job": {"file": {"name": "a.gcode"}}, "progress": {"completion": 5.0},
        "currentZ": 1.2, "offsets": {}, "resends": {"count": 0},
    }
    plugin._printer.get_current_temperatures.return_value = {
        "tool0": {"actual": 210.0, "target": 210.0}, "bed": {"actual": 60.0, "target": 60.0},
        "W": {"actual": 1.0}, "chamber": {"actual": 30.0, "target": 0},
    }
    plugin.current_printer_profile.return_value = {
        "axes": {"x": {"inverted": True}, "y": {"inverted": False}},
        "extruder": {"count": 1, "sharedNozzle": False}, "heatedBed": True, "heatedChamber": False}
    plugin.agent_version.return_value = "2.6.1"
    plugin._printer.jog.return_value = None
    plugin._printer.is_printing.return_value = False
    plugin._printer.is_paused.return_value = False
    plugin._settings.get_float.return_value = None  # the owner's heater limits: unset
    remote_calls = None  # every passthru call the allow-list knows
    plugin._settings.get.side_effect = (
        lambda path, **kwargs: remote_calls if path == ["remote_calls"] else mock.DEFAULT)
    plugin._settings.global_get.return_value = [{"name": "PLA", "extruder": 200, "bed": 60}]
    plugin._plugin_manager.enabled_plugins = {"tsd": None, "virtual_printer": None}
    plugin._detection.server_webcams.return_value = []
    plugin._file_manager.get_metadata.return_value = {"hash": "abc", "analysis": {}, "history": [1]}
    r = remote.Remote(plugin, mock.Mock(name="logger"), clock=lambda: 1700000000.5)
    r._tunnel = FakeTunnel()
    r._dispatcher = bridge.new_dispatcher()
    return r, plugin


def message(r, body):
    r._on_message(json.dumps(body).encode())


def test_ws_url():
    assert remote.ws_url("https://app.obico.io") == "wss://app.obico.io/ws/dev/"
    assert remote.ws_url("http://192.168.1.5:3334/") == "ws://192.168.1.5:3334/ws/dev/"
    with pytest.raises(ValueError):
        remote.ws_url("ftp://x")


def test_status_shape(link):
    r, _ = link
    status = r.build_status()
    assert status["current_print_ts"] == -1
    assert status["status"]["_ts"] == 1700000000
    assert set(status["status"]["temperatures"]) == {"tool0", "bed", "chamber"}
    assert status["settings"]["agent"] == {"name": "octoprint_obico", "version": "2.6.1"}
    # settings only on (re)connect or every 30 minutes
    assert "settings" not in r.build_status()
    for key in ("janus", "passthru", "http.tunnelv2", "ws.tunnel"):
        assert key not in status


def test_print_events_carry_the_print_identity(link):
    r, _ = link
    r.on_print_event("PrintStarted", {"name": "a.gcode"})
    started = r._tunnel.statuses[-1]
    assert started["event"]["event_type"] == "PrintStarted"
    assert started["current_print_ts"] == 1700000000
    r.on_print_event("PrintDone", {"name": "a.gcode"})
    done = r._tunnel.statuses[-1]
    assert done["event"]["event_type"] == "PrintDone"
    assert done["current_print_ts"] == 1700000000  # reset only after this status
    assert r.current_print_ts == -1
    r.on_print_event("Upload", {})
    assert len(r._tunnel.statuses) == 2


def test_commands_map_to_octoprint_calls(link):
    r, plugin = link
    message(r, {"commands": [{"cmd": "pause", "args": {"retract": 5}}, {"cmd": "resume"}, {"cmd": "cancel"}]})
    plugin.remote_pause.assert_called_once()
    assert plugin.remote_pause.call_args[0][0]["retract"] == 5.0
    plugin._printer.resume_print.assert_called_once_with()
    plugin._printer.cancel_print.assert_called_once_with()
    assert r.actions_done == 3


def test_passthru_calls_and_acks(link):
    r, plugin = link
    message(r, {"passthru": {"ref": "j", "target": "_printer", "func": "jog", "args": [{"x": 10, "y": 5}]}})
    plugin._printer.jog.assert_called_once_with({"x": -10.0, "y": 5.0}, relative=True, speed=None)
    assert r._tunnel.sent[-1] == {"passthru": {"ref": "j", "ret": None}}

    plugin._printer.get_connection_options.return_value = {"ports": ["VIRTUAL"]}
    message(r, {"passthru": {"ref": "o", "target": "_printer", "func": "get_connection_options"}})
    assert r._tunnel.sent[-1] == {"passthru": {"ref": "o", "ret": {"ports": ["VIRTUAL"]}}}

    message(r, {"passthru": {"ref": "x", "target": "_settings", "func": "set", "args": []}})
    assert r._tunnel.sent[-1] == {"passthru": {"ref": "x", "error": "not allowed"}}
    plugin._settings.set.assert_not_called()

    plugin._file_manager.file_exists.return_value = False
    message(r, {"passthru": {"ref": "s", "target": "_printer", "func": "select_file", "args": ["nope.gcode", None]}})
    assert "no such file" in r._tunnel.sent[-1]["passthru"]["error"]
    plugin._printer.select_file.assert_not_called()


def test_a_failing_octoprint_call_is_acked_with_the_error(link):
    r, plugin = link
    plugin._printer.home.side_effect = RuntimeError("printer not connected")
    message(r, {"passthru": {"ref": "h", "target": "_printer", "func": "home", "args": [["z"]]}})
    assert r._tunnel.sent[-1] == {"passthru": {"ref": "h", "error": "printer not connected"}}


def test_viewing_boosts_the_status_cadence(link):
    r, _ = link
    assert not r.viewing
    message(r, {"remote_status": {"viewing": True, "should_watch": True}})
    assert r.viewing and r.should_watch


def test_malformed_server_message_is_logged_not_raised(link):
    r, _ = link
    r._on_message(b"{broken")
    r._logger.warning.assert_called()


def test_status_cadence_idle_and_boosted(link, monkeypatch):
    import threading
    import time

    r, _ = link
    monkeypatch.setattr(remote, "STATUS_INTERVAL", 0.5)
    monkeypatch.setattr(remote, "STATUS_INTERVAL_BOOSTED", 0.1)
    thread = threading.Thread(target=r._status_loop)
    thread.start()
    try:
        time.sleep(1.6)
        idle = len(r._tunnel.statuses)
        r.boost(seconds=60)
        time.sleep(1.0)
        boosted = len(r._tunnel.statuses) - idle
    finally:
        r._stop.set()
        r._wake.set()
        thread.join(5)
    assert 3 <= idle <= 5       # every 0.5 s for 1.6 s, the first at once
    assert 7 <= boosted <= 12   # every 0.1 s for 1.0 s


# ---- issue 11: the remote-control path ------------------------------------------------

def set_state(plugin, state):
    """The printer as OctoPrint reports it: "idle", "printing" or "paused"."""
    plugin._printer.is_printing.return_value = state == "printing"
    plugin._printer.is_paused.return_value = state == "paused"


def ack_of(r, ref):
    for sent in reversed(r._tunnel.sent):
        if sent.get("passthru", {}).get("ref") == ref:
            return sent["passthru"]
    return None


def call(r, ref, func, *args, target="_printer", **kwargs):
    body = {"ref": ref, "target": target, "func": func, "args": list(args)}
    if kwargs:
        body["kwargs"] = kwargs
    message(r, {"passthru": body})
    return ack_of(r, ref)


@pytest.mark.parametrize("state", ["printing", "paused"])
def test_sec03_motion_is_refused_mid_print(link, state):
    r, plugin = link
    set_state(plugin, state)
    printer = plugin._printer
    refused = [
        call(r, "jog", "jog", {"x": 10}),
        call(r, "home", "home", ["x", "y"]),
        call(r, "connect", "connect", "VIRTUAL", 115200),
        call(r, "select", "select_file", "a.gcode", None),
        call(r, "motors", "commands", "M84"),
        call(r, "extrude", "commands", "M83\nG1 E5 F300"),
        call(r, "tool", "commands", "T0"),
        call(r, "mode", "commands", "G91"),
    ]
    for ack in refused:
        assert ack is not None and "error" in ack, ack
        assert state in ack["error"], ack
    assert "error" in call(r, "feed", "commands", "G1 F100")  # not even when idle
    printer.jog.assert_not_called()
    printer.home.assert_not_called()
    printer.connect.assert_not_called()
    printer.select_file.assert_not_called()
    printer.commands.assert_not_called()
    # What is safe mid-print still works.
    for ref, func, args in [("temp", "set_temperature", ["tool0", 215]),
                            ("fan", "commands", [["M106 S128", "M220 S110", "M221 S95"]]),
                            ("baby", "commands", ["M290 Z0.05"]),
                            ("opts", "get_connection_options", [])]:
        assert "error" not in call(r, ref, func, *args), ref
    printer.set_temperature.assert_called_once_with("tool0", 215.0)
    assert printer.commands.call_args_list == [mock.call(["M106 S128", "M220 S110", "M221 S95"]),
                                               mock.call(["M290 Z0.05"])]


def test_sec03_motion_is_allowed_when_idle(link):
    r, plugin = link
    set_state(plugin, "idle")
    plugin._printer.home.return_value = None
    assert call(r, "jog", "jog", {"x": 10}) == {"ref": "jog", "ret": None}
    assert call(r, "home", "home", ["x"]) == {"ref": "home", "ret": None}


def test_sec04_absolute_extrusion_is_refused(link):
    r, plugin = link
    set_state(plugin, "idle")
    # The printer is in absolute extrusion (the default, or M82 from a file).
    assert "error" in call(r, "abs", "commands", "G1 E-100")
    # M82 then a move in the same call: an absolute move to E=-100.
    assert "error" in call(r, "m82", "commands", ["M82", "G1 E-100"])
    plugin._printer.commands.assert_not_called()
    # Relative extrusion is allowed, and the printer's modes are put back.
    assert "error" not in call(r, "rel", "commands", ["M83", "G1 E5 F300"])
    plugin._printer.commands.assert_called_once_with(["M83", "G1 E5 F300", "G90", "M82"])


def test_sec04_extrusion_is_bounded_per_call_and_per_minute(link):
    r, plugin = link
    set_state(plugin, "idle")
    assert "error" in call(r, "big", "commands", ["M83"] + ["G1 E60"] * 2)
    plugin._printer.commands.assert_not_called()
    accepted = 0
    for i in range(10):
        if "error" not in call(r, "e%d" % i, "commands", ["M83", "G1 E50 F300"]):
            accepted += 1
    assert accepted == 4  # 200 mm per minute


def test_sec04_feed_rate_only_moves_are_refused(link):
    r, plugin = link
    set_state(plugin, "idle")
    for ref, line in (("f1", "G1 F100"), ("f2", "G0 F9000")):
        assert "error" in call(r, ref, "commands", line)
    plugin._printer.commands.assert_not_called()


def test_sec04_babystep_total_is_bounded_per_print(link):
    r, plugin = link
    set_state(plugin, "printing")
    r.on_print_event("PrintStarted", {})
    assert "error" in call(r, "b-many", "commands", ["M290 Z-0.1"] * 20)
    accepted = sum("error" not in call(r, "b%d" % i, "commands", "M290 Z-0.25") for i in range(10))
    assert accepted == 4  # 1 mm in total
    # Upwards again is allowed: the bound is on the net offset.
    assert "error" not in call(r, "up", "commands", "M290 Z0.25")
    # A new print starts a new total.
    r._clock = lambda: 1700000100.0
    r.on_print_event("PrintStarted", {})
    assert "error" not in call(r, "next", "commands", "M290 Z-0.25")


def test_sec07_connect_only_to_a_port_octoprint_offers(link):
    r, plugin = link
    set_state(plugin, "idle")
    plugin._printer.get_connection_options.return_value = {
        "ports": ["VIRTUAL", "/dev/ttyUSB0"], "baudrates": [250000, 115200],
        "portPreference": None, "baudratePreference": None, "autoconnect": False}
    for ref, port, baud in (("c1", "/dev/sda", 115200), ("c2", "/etc/passwd", None),
                            ("c3", "VIRTUAL", 57600), ("c4", "virtual", 115200)):
        ack = call(r, ref, "connect", port, baud)
        assert "error" in ack, (port, baud)
    plugin._printer.connect.assert_not_called()
    assert "error" not in call(r, "ok", "connect", "/dev/ttyUSB0", 250000)
    assert "error" not in call(r, "auto", "connect", None, None)
    assert plugin._printer.connect.call_args_list == [
        mock.call(port="/dev/ttyUSB0", baudrate=250000), mock.call(port=None, baudrate=None)]


class NativeLaneTunnel(FakeTunnel):
    """Records what is sent, after the native tunnel's own outgoing lane
    (not started, so nothing leaves) accepted it: the same size limit."""
    def __init__(self):
        super().__init__()
        self.native = bridge.new_tunnel("wss://localhost:9/ws/dev/", "a" * 20)

    def send(self, text):
        accepted = self.native.send(text)
        super().send(text)
        return accepted


def test_sec11_every_action_is_acked_after_an_oversized_reply(link):
    r, plugin = link
    set_state(plugin, "idle")
    r._tunnel = NativeLaneTunnel()
    # A listing larger than the outgoing lane (2 MiB).
    plugin._file_manager.list_files.return_value = {
        "local": {"f%d" % i: {"name": "x" * 1000} for i in range(3000)}}
    plugin._printer.get_connection_options.return_value = {"ports": ["VIRTUAL"]}
    plugin._printer.resume_print.side_effect = RuntimeError("not paused")
    message(r, {"commands": [{"cmd": "resume"}, {"cmd": "cancel"}],
                "passthru": {"ref": "big", "target": "_file_manager", "func": "list_files"}})
    plugin._printer.cancel_print.assert_called_once_with()  # after the failing resume
    ack = ack_of(r, "big")
    assert ack is not None and "error" in ack and "too big" in ack["error"], ack
    message(r, {"passthru": {"ref": "next", "target": "_printer", "func": "get_connection_options"}})
    assert ack_of(r, "next") == {"ref": "next", "ret": {"ports": ["VIRTUAL"]}}


def test_sec12_heaters_follow_the_printer_profile(link):
    r, plugin = link
    set_state(plugin, "idle")
    plugin.current_printer_profile.return_value = {
        "extruder": {"count": 1, "sharedNozzle": False}, "heatedBed": False, "heatedChamber": False}
    for ref, heater in (("t1", "tool1"), ("bed", "bed"), ("ch", "chamber")):
        assert "error" in call(r, ref, "set_temperature", heater, 50), heater
    plugin._printer.set_temperature.assert_not_called()
    assert "error" not in call(r, "t0", "set_temperature", "tool0", 200)
    plugin.current_printer_profile.return_value = {
        "extruder": {"count": 2, "sharedNozzle": False}, "heatedBed": True, "heatedChamber": False}
    assert "error" in call(r, "t1a", "set_temperature", "tool1", 200)  # not read again yet
    r.on_print_event("PrinterProfileModified", {})
    assert "error" not in call(r, "t1b", "set_temperature", "tool1", 200)
    assert "error" not in call(r, "bedb", "set_temperature", "bed", 60)
    assert "error" in call(r, "t2", "commands", "T2")


def test_sec12_the_owner_lowers_the_heater_limits(link):
    r, plugin = link
    set_state(plugin, "idle")
    limits = {"max_tool_temp": 250, "max_bed_temp": 900, "max_chamber_temp": None}
    plugin._settings.get_float.side_effect = lambda path, **kwargs: limits[path[0]]
    assert "error" in call(r, "hot", "set_temperature", "tool0", 260)
    assert "error" not in call(r, "ok", "set_temperature", "tool0", 250)
    # Never above the fixed ceilings, whatever the setting says.
    assert "error" in call(r, "bed", "set_temperature", "bed", 151)
    assert "error" not in call(r, "bed2", "set_temperature", "bed", 150)
    limits["max_tool_temp"] = 200
    r.on_print_event("SettingsUpdated", {})
    assert "error" in call(r, "hot2", "set_temperature", "tool0", 210)


def test_sec03_unreadable_printer_state_means_the_strictest_rules(link):
    r, plugin = link
    set_state(plugin, "idle")
    plugin.current_printer_profile.side_effect = RuntimeError("profile manager gone")
    assert "printing" in call(r, "jog", "jog", {"x": 1})["error"]
    plugin._printer.jog.assert_not_called()
    message(r, {"commands": [{"cmd": "pause"}]})  # a pause still happens
    plugin.remote_pause.assert_called_once()


# ---- issue 15: parity with the real server ---------------------------------------------

# OctoPrint 1.10's own order (octoprint/printer/standard.py): a cancel fires
# PrintCancelling, PrintCancelled, then PrintFailed (reason "cancelled") from
# a thread; an error fires PrintFailed (reason "error"); a finished print
# PrintDone.
OCTOPRINT_EVENT_ORDER = {
    "cancel": [("PrintCancelling", {}), ("PrintCancelled", {}), ("PrintFailed", {"reason": "cancelled"})],
    "failure": [("PrintFailed", {"reason": "error"})],
    "done": [("PrintDone", {})],
}


@pytest.mark.parametrize("ending", sorted(OCTOPRINT_EVENT_ORDER))
def test_parity2_every_end_of_print_status_carries_the_print(link, ending):
    """The real server force-closes a print on a current_print_ts of -1
    while that print is active: each status of the print's end must carry
    its identity, and only the last one may end it."""
    r, _ = link
    r.on_print_event("PrintStarted", {"name": "a.gcode"})
    for event, payload in OCTOPRINT_EVENT_ORDER[ending]:
        r.on_print_event(event, dict(payload, name="a.gcode"))
    ends = r._tunnel.statuses[1:]
    assert [s["event"]["event_type"] for s in ends] == [e for e, _ in OCTOPRINT_EVENT_ORDER[ending]]
    assert [s["current_print_ts"] for s in ends] == [1700000000] * len(ends)
    assert r.current_print_ts == -1
    r.on_print_event("PrintStarted", {"name": "b.gcode"})  # the next print is a new one
    assert r._tunnel.statuses[-1]["current_print_ts"] == 1700000000


def test_farm_turns_remote_calls_off(link):
    """remote_calls (a farm file's remote.calls): a call not listed is
    refused with an error ack and never reaches OctoPrint."""
    r, plugin = link
    set_state(plugin, "idle")
    enabled = ["home"]
    plugin._settings.get.side_effect = (
        lambda path, **kwargs: enabled if path == ["remote_calls"] else mock.DEFAULT)
    plugin._printer.home.return_value = None
    ack = call(r, "jog", "jog", {"x": 10})
    assert "turned off" in ack["error"]
    plugin._printer.jog.assert_not_called()
    assert call(r, "home", "home", ["x"]) == {"ref": "home", "ret": None}
    enabled[:] = []
    assert "turned off" in call(r, "home2", "home", ["x"])["error"]
    assert plugin._printer.home.call_count == 1


def test_tunnel_timing_follows_the_time_scale(monkeypatch):
    """TSD_TIME_SCALE shrinks the tunnel's backoff and its silent-link
    hang-up with the rest of the plugin (the fault suite's bounds rely on
    it); unscaled, the native defaults apply."""
    made = []
    monkeypatch.setattr(bridge, "new_tunnel", lambda url, token, **options: made.append(options)
                        or mock.Mock(**{"next_event.side_effect": bridge.QueueClosedError}))
    plugin = mock.Mock(name="plugin")
    for scale, expected in (("1", {}), ("0.05", {"backoff_first_ms": 50, "backoff_cap_ms": 3000,
                                                  "ping_after_s": 2, "hangup_after_s": 5})):
        monkeypatch.setenv("TSD_TIME_SCALE", scale)
        r = remote.Remote(plugin, mock.Mock(name="logger"))
        assert r.start("https://localhost:1", "a" * 20, ca_file=None)
        r.stop()
        options = {k: v for k, v in made[-1].items() if k not in ("ca_file", "allow_cleartext_lan")}
        assert options == expected
