# SPDX-License-Identifier: AGPL-3.0-or-later
"""The allow-list for server messages (native/core/proto.c) seen from Python."""

import json

import pytest

from octoprint_tsd import _tsd


def dispatch(message, dispatcher=None, state="idle", **printer):
    dispatcher = dispatcher or _tsd.Dispatcher()
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    printer.setdefault("heated_bed", True)
    return json.loads(dispatcher.dispatch(raw, state, **printer))


def passthru(target, func, args=None, kwargs=None, ref="r1", **extra):
    body = {"ref": ref, "target": target, "func": func}
    if args is not None:
        body["args"] = args
    if kwargs is not None:
        body["kwargs"] = kwargs
    body.update(extra)
    return {"passthru": body, "type": "printer.message"}


def test_pause_with_server_arguments():
    (action,) = dispatch({"commands": [{"cmd": "pause", "initiator": "system",
                                        "args": {"retract": 5, "lift_z": 3, "tools_off": True, "bed_off": True}}]})
    assert action == {"action": "pause", "retract": 5.0, "lift_z": 3.0, "tools_off": True,
                      "bed_off": True, "initiator": "system", "warnings": []}


def test_pause_defaults_and_bad_numbers_still_pause():
    (action,) = dispatch({"commands": [{"cmd": "pause"}]})
    assert (action["retract"], action["lift_z"]) == (6.5, 2.5)
    assert action["tools_off"] is False and action["initiator"] == "unknown"
    (action,) = dispatch({"commands": [{"cmd": "pause", "args": {"retract": 1e9, "lift_z": -4, "tools_off": "yes"}}]})
    assert action["action"] == "pause"
    assert (action["retract"], action["lift_z"]) == (0.0, 0.0)
    assert action["tools_off"] is False
    assert len(action["warnings"]) == 3


def test_resume_cancel_and_unknown_commands():
    actions = dispatch({"commands": [{"cmd": "resume"}, {"cmd": "cancel", "initiator": "user"},
                                     {"cmd": "print"}, {"cmd": 7}, "junk"]})
    assert [a["action"] for a in actions] == ["resume", "cancel", "rejected", "rejected", "rejected"]
    assert actions[1]["initiator"] == "user"


def test_command_list_is_bounded():
    (action,) = dispatch({"commands": [{"cmd": "resume"}] * 17})
    assert action["action"] == "rejected"


def test_remote_status_and_unknown_keys():
    actions = dispatch({"remote_status": {"viewing": True}, "janus": "x", "http.tunnelv2": {}, "as_binary": True})
    assert actions == [{"action": "remote_status", "viewing": True, "should_watch": None}]
    assert dispatch({"unknown": 1, "type": "printer.message"}) == []


@pytest.mark.parametrize("target, func", [
    ("_settings", "set"), ("_plugin_manager", "reload_plugins"), ("_printer", "start_print"),
    ("_printer", "__class__"), ("file_downloader", "__init__"), ("jpeg_poster", "web_snapshot_request"),
    ("file_operations", "start_printer_local_print"),
    ("_file_manager", "remove_file"), ("_printer", "commands_raw"),
])
def test_targets_outside_the_allow_list_get_an_error_ack(target, func):
    (action,) = dispatch(passthru(target, func, args=[]))
    assert action == {"action": "passthru_error", "ref": "r1", "error": "not allowed"}


def test_cloudprint_download_needs_an_operational_idle_printer():
    file = {"id": 7, "url": "https://storage.example/a.gcode?sig=x", "filename": "a b.gcode",
            "safe_filename": "../a_b.gcode"}
    (refused,) = dispatch(passthru("file_downloader", "download", [file]))
    assert refused["action"] == "passthru_error" and "Printer busy" in refused["error"]
    (busy,) = dispatch(passthru("file_downloader", "download", [file]), state="printing", operational=True)
    assert busy["error"] == "download is not allowed while printing"
    (action,) = dispatch(passthru("file_downloader", "download", [file]), operational=True)
    assert action["call"] == "download"
    assert action["params"] == {"id": 7, "url": file["url"], "filename": "a b.gcode", "safe_name": "a_b.gcode"}


def test_jog_home_and_temperatures():
    (jog,) = dispatch(passthru("_printer", "jog", [{"x": 10, "z": -0.5}]))
    assert jog["call"] == "jog" and jog["params"]["axes"] == {"x": 10.0, "z": -0.5}
    assert dispatch(passthru("_printer", "jog", [{"x": 1e6}], ref="r2"))[0]["action"] == "passthru_error"
    assert dispatch(passthru("_printer", "jog", [{"a": 1}], ref="r3"))[0]["action"] == "passthru_error"
    (home,) = dispatch(passthru("_printer", "home", [["x", "y", "x"]]))
    assert home["params"]["axes"] == ["x", "y"]
    assert dispatch(passthru("_printer", "home", [["e"]]))[0]["action"] == "passthru_error"
    (temp,) = dispatch(passthru("_printer", "set_temperature", ["tool0", 210]))
    assert temp["params"] == {"heater": "tool0", "value": 210.0}
    for args in (["tool0", 900], ["bed", 200], ["tool99", 100], ["heater; rm", 10], ["bed", "hot"]):
        raw = json.dumps(passthru("_printer", "set_temperature", args)).encode()
        assert json.loads(_tsd.Dispatcher().dispatch(raw, "idle"))[0]["action"] == "passthru_error", args
    # NaN is not JSON at all: the whole message is refused.
    with pytest.raises(_tsd.TsdError):
        _tsd.Dispatcher().dispatch(json.dumps(passthru("_printer", "set_temperature", ["bed", float("nan")])).encode(),
                                   "idle")


@pytest.mark.parametrize("line, safe", [
    ("M106 S255", True), ("M107", True), ("M18", True), ("M84", True), ("M220 S110", True),
    ("M221 S95", True), ("M290 Z0.05", True), ("M117 Layer 3 of 120", True), ("M83", True),
    ("G1 E5 F300", True), ("G1 E-2", True), ("T1", True), ("M112", True), ("M105", True),
    ("G28", False), ("G1 X10", False), ("G1 Z100 E1", False), ("M104 S300", False),
    ("M140 S200", False), ("M500", False), ("M502", False), ("M303 E0 S200", False),
    ("M220 S5000", False), ("G1 E500", False), ("M106 S999", False), ("T99", False),
    ("G1 F300", False), ("G0 F9000", False), ("M290 Z-0.6", False), ("G1 E1 E1", False),
    ("M997", False), ("M30 /sd/file.gco", False), ("", False),
])
def test_safe_gcode_set(line, safe):
    assert _tsd.Dispatcher.gcode_line_is_safe(_tsd.Dispatcher(), line) is safe


def test_commands_are_restricted_unless_raw_gcode_is_enabled():
    message = passthru("_printer", "commands", ["M106 S255\nM83\nG1 E5 F300 ; extrude"])
    (ok,) = dispatch(message)
    # The printer's positioning modes are put back after the call.
    assert ok["params"]["lines"] == ["M106 S255", "M83", "G1 E5 F300", "G90", "M82"]
    message = passthru("_printer", "commands", ["M106 S255\nM500"], ref="r2")
    (refused,) = dispatch(message)
    assert refused["action"] == "passthru_error" and "raw G-code" in refused["error"]
    raw = _tsd.Dispatcher(allow_raw_gcode=True)
    (allowed,) = dispatch(message, raw)
    assert allowed["params"]["lines"] == ["M106 S255", "M500"]
    # Even raw G-code never carries control characters or huge lines.
    (bad,) = dispatch(passthru("_printer", "commands", ["M117 \x07bell"], ref="r3"), raw)
    assert bad["action"] == "passthru_error"
    (long,) = dispatch(passthru("_printer", "commands", ["M117 " + "x" * 500], ref="r4"), raw)
    assert long["action"] == "passthru_error"


def test_files_and_connection():
    (select,) = dispatch(passthru("_printer", "select_file", ["parts/benchy.gcode", None],
                                  {"printAfterSelect": "true"}))
    assert select["params"] == {"path": "parts/benchy.gcode", "print": True}
    for path in ("../../etc/passwd", "/etc/passwd", "a/../../b", ""):
        assert dispatch(passthru("_printer", "select_file", [path, None]))[0]["action"] == "passthru_error"
    assert dispatch(passthru("_printer", "select_file", ["a.gcode", True]))[0]["action"] == "passthru_error"
    (listing,) = dispatch(passthru("_file_manager", "list_files", None, {"path": "", "recursive": False, "level": 1}))
    assert listing["params"] == {"path": "", "recursive": False, "level": 1, "filter": None}
    (connect,) = dispatch(passthru("_printer", "connect", ["VIRTUAL", 115200]))
    assert connect["params"] == {"port": "VIRTUAL", "baudrate": 115200}
    assert dispatch(passthru("_printer", "connect", ["VIRTUAL", 123]))[0]["action"] == "passthru_error"
    (options,) = dispatch(passthru("_printer", "get_connection_options"))
    assert options["params"] == {}


def test_duplicate_refs_are_answered_once():
    dispatcher = _tsd.Dispatcher()
    message = passthru("_printer", "home", [["x"]], ref="dup-1")
    assert len(dispatch(message, dispatcher)) == 1
    assert dispatch(message, dispatcher) == []
    # The memory is bounded: after many other refs the first one is forgotten.
    for i in range(200):
        dispatch(passthru("_printer", "home", [["x"]], ref="other-%d" % i), dispatcher)
    assert len(dispatch(message, dispatcher)) == 1


def test_passthru_without_ref_cannot_be_acked():
    (action,) = dispatch({"passthru": {"target": "_printer", "func": "home", "args": [["x"]]}})
    assert action["action"] == "rejected"
    (action,) = dispatch({"passthru": {"ref": "x" * 500, "target": "_printer", "func": "home"}})
    assert action["action"] == "rejected"


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"text"', b'{"a":1,"a":2}', b"\xff\xfe"])
def test_malformed_messages_raise_a_clear_error(raw):
    with pytest.raises(_tsd.TsdError, match="server message ignored"):
        _tsd.Dispatcher().dispatch(raw, "idle")


def test_wrong_types_never_crash():
    dispatcher = _tsd.Dispatcher()
    for value in (None, 1, 1.5, "s", [], {}, [None], [{}], {"args": 5}):
        for key in ("commands", "passthru", "remote_status"):
            json.loads(dispatcher.dispatch(json.dumps({key: value}).encode(), "idle"))
        for field in ("ref", "target", "func", "args", "kwargs"):
            body = {"ref": "t", "target": "_printer", "func": "jog", "args": [{"x": 1}]}
            body[field] = value
            json.loads(dispatcher.dispatch(json.dumps({"passthru": body}).encode(), "printing"))


def test_the_printer_state_is_required_and_checked():
    raw = json.dumps(passthru("_printer", "home", [["x"]])).encode()
    with pytest.raises(TypeError):
        _tsd.Dispatcher().dispatch(raw)
    with pytest.raises(ValueError, match="idle, printing or paused"):
        _tsd.Dispatcher().dispatch(raw, "operational")
