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
    plugin.current_printer_profile.return_value = {"axes": {"x": {"inverted": True}, "y": {"inverted": False}}}
    plugin.agent_version.return_value = "2.6.1"
    plugin._printer.jog.return_value = None
    plugin._printer.is_printing.return_value = True
    plugin._printer.is_paused.return_value = False
    plugin._settings.get_float.return_value = None  # the owner's heater limits: unset
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
