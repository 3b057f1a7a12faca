# SPDX-License-Identifier: AGPL-3.0-or-later
"""Remote control end to end: a real OctoPrint with its virtual printer and
this plugin, linked to the reference server over TLS on loopback.

The rig is in tests/remote_rig.py.
"""

import json
import time

import pytest

from remote_rig import TOKEN, ack_of, linked_octoprint, start_print
from tsd_testing import rss_mb, wait_for

TIME_SCALE = 0.05


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    with linked_octoprint(tmp_path_factory, "remote", TIME_SCALE) as rig:  # 50 s -> 2.5 s, 10 s -> 0.5 s
        yield rig


def test_links_up_and_reports_status(linked):
    assert wait_for(lambda: linked.server.live(TOKEN) == 1, 30)
    assert wait_for(lambda: linked.status()["remote"]["state"] == "connected", 30)
    statuses = wait_for(lambda: linked.server.statuses(TOKEN), 30)
    first = statuses[0].json
    assert first["settings"]["agent"]["name"] == "octoprint_obico"
    assert isinstance(first["status"]["_ts"], int)
    assert first["current_print_ts"] == -1
    assert set(first["status"]["temperatures"]) <= {"tool0", "bed", "chamber"}
    for key in ("janus", "passthru", "http.tunnelv2", "ws.tunnel"):
        assert key not in first


def status_gaps(linked, since):
    times = [s.time for s in linked.server.statuses(TOKEN) if s.time >= since]
    return [b - a for a, b in zip(times, times[1:])]


def test_status_cadence_idle_and_boosted(linked):
    # Idle: every 50 s (scaled: 2.5 s).
    start = time.monotonic()
    time.sleep(9)
    idle = sorted(status_gaps(linked, start))
    assert len(idle) >= 2
    assert 50 * TIME_SCALE * 0.8 <= idle[len(idle) // 2] <= 50 * TIME_SCALE * 1.3, idle
    # A remote action boosts it to every 10 s (scaled: 0.5 s).
    linked.send({"passthru": {"ref": "boost-1", "target": "_printer", "func": "get_connection_options"}})
    start = time.monotonic()
    time.sleep(3)
    boosted = sorted(status_gaps(linked, start + 0.6))
    assert len(boosted) >= 3
    assert 10 * TIME_SCALE * 0.6 <= boosted[len(boosted) // 2] <= 10 * TIME_SCALE * 1.6, boosted


def octoprint_rss_mb(linked):
    return rss_mb(linked.instance.process.pid)


def test_bad_input_keeps_octoprint_and_the_link_working(linked):
    before = octoprint_rss_mb(linked)
    connects = linked.server.connect_count
    linked.send("{not json")
    linked.send('{"commands": "pause"}')
    linked.send('{"passthru": [1, 2]}')
    linked.send('{"commands": [{"cmd": "pause", "args": {"retract": "lots"}}], "x": ' + "1" * 100 + "}")
    linked.send("[" + '"x",' * (16 * 1024 * 1024 // 4) + '"x"]')  # a 16 MiB frame
    for i in range(10000):
        linked.send({"unknown_%d" % (i % 13): {"nested": [i]}})
    # Still connected, still answering, not paused by the malformed pause.
    linked.send({"passthru": {"ref": "after-flood", "target": "_printer", "func": "get_connection_options"}})
    assert wait_for(lambda: any("after-flood" in m.text for m in linked.server.messages(TOKEN)), 60)
    assert linked.server.connect_count == connects
    assert linked.status()["remote"]["state"] == "connected"
    assert linked.printer_state() == "Operational"
    assert octoprint_rss_mb(linked) - before < 40


def test_pause_resume_cancel_from_the_server(linked):
    start_print(linked)
    started = wait_for(lambda: [s.json for s in linked.server.statuses(TOKEN)
                                if (s.json.get("event") or {}).get("event_type") == "PrintStarted"], 30)
    assert started and started[-1]["current_print_ts"] > 0

    mark = len(linked.serial_log())
    linked.send({"commands": [{"cmd": "pause", "initiator": "system",
                               "args": {"retract": 6.5, "lift_z": 2.5, "tools_off": True}}]})
    assert wait_for(lambda: linked.printer_state() == "Paused", 60)
    assert wait_for(lambda: "M104 S0" in linked.sent_since(mark), 30)
    sent = linked.sent_since(mark)
    pause_block = sent[sent.index("G91"):]
    assert pause_block[:5] == ["G91", "M83", "G1 E-6.5 F1800", "G1 Z2.5 F600", "G90"]
    assert "M82" in pause_block  # the file's absolute extrusion is restored
    assert wait_for(lambda: [s for s in linked.server.statuses(TOKEN)
                             if (s.json.get("event") or {}).get("event_type") == "PrintPaused"], 30)

    mark = len(linked.serial_log())
    linked.send({"commands": [{"cmd": "resume", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() == "Printing", 90)
    sent = linked.sent_since(mark)
    assert "M109 S210" in sent  # reheat and wait before moving
    heat = sent.index("M109 S210")
    assert sent[heat + 1:heat + 6] == ["G91", "M83", "G1 Z-2.5 F600", "G1 E6.5 F1800", "G90"]

    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() in ("Operational", "Cancelling"), 60)
    assert wait_for(lambda: linked.printer_state() == "Operational", 60)


def test_passthru_allow_list(linked):
    acks = {}

    def ack(ref):
        return ack_of(linked, ref)

    mark = len(linked.serial_log())
    linked.send({"passthru": {"ref": "home-1", "target": "_printer", "func": "home", "args": [["x", "y"]]}})
    acks["home"] = wait_for(lambda: ack("home-1"), 30)
    assert acks["home"] == {"ref": "home-1", "ret": None}
    assert wait_for(lambda: any(line.startswith("G28") for line in linked.sent_since(mark)), 30)

    linked.send({"passthru": {"ref": "evil-1", "target": "_settings", "func": "set", "args": [["api", "key"], "x"]}})
    assert wait_for(lambda: ack("evil-1"), 30) == {"ref": "evil-1", "error": "not allowed"}

    mark = len(linked.serial_log())
    linked.send({"passthru": {"ref": "raw-1", "target": "_printer", "func": "commands", "args": ["M500"]}})
    assert "raw G-code" in wait_for(lambda: ack("raw-1"), 30)["error"]
    linked.send({"passthru": {"ref": "fan-1", "target": "_printer", "func": "commands", "args": ["M106 S128"]}})
    assert wait_for(lambda: ack("fan-1"), 30) == {"ref": "fan-1", "ret": None}
    assert wait_for(lambda: "M106 S128" in linked.sent_since(mark), 30)
    assert "M500" not in linked.sent_since(mark)

    linked.send({"passthru": {"ref": "files-1", "target": "_file_manager", "func": "list_files",
                              "kwargs": {"path": "", "recursive": False}}})
    listing = wait_for(lambda: ack("files-1"), 30)
    assert "remote-test.gcode" in json.dumps(listing["ret"])

    # The same ref again (websocket and data channel): answered once.
    count = len([m for m in linked.server.messages(TOKEN) if "home-1" in m.text])
    linked.send({"passthru": {"ref": "home-1", "target": "_printer", "func": "home", "args": [["x"]]}})
    time.sleep(1.5)
    assert len([m for m in linked.server.messages(TOKEN) if "home-1" in m.text]) == count


def call(linked, ref, func, *args):
    linked.send({"passthru": {"ref": ref, "target": "_printer", "func": func, "args": list(args)}})
    return wait_for(lambda: ack_of(linked, ref), 30)


def test_sec03_no_motion_while_printing_or_paused(linked):
    start_print(linked)
    mark = len(linked.serial_log())
    for state in ("printing", "paused"):
        if state == "paused":
            linked.send({"commands": [{"cmd": "pause", "initiator": "user",
                                       "args": {"retract": 0, "lift_z": 0}}]})
            assert wait_for(lambda: linked.printer_state() == "Paused", 60)
        for ref, func, args in [("jog", "jog", [{"x": 10}]), ("home", "home", [["x", "y"]]),
                                ("connect", "connect", ["VIRTUAL", 115200]),
                                ("motors", "commands", ["M84"]),
                                ("select", "select_file", ["remote-test.gcode", None])]:
            ack = call(linked, "%s-%s" % (ref, state), func, *args)
            assert "error" in ack and state in ack["error"], ack
        assert "error" in call(linked, "feed-" + state, "commands", "G1 F100")
        # What is safe mid-print still works.
        assert call(linked, "fan-" + state, "commands", "M106 S77") == {"ref": "fan-" + state, "ret": None}
        assert wait_for(lambda: "M106 S77" in linked.sent_since(mark), 30)
        assert linked.printer_state() == ("Printing" if state == "printing" else "Paused")
    sent = linked.sent_since(mark)
    assert not [line for line in sent if line.startswith(("G28", "M84", "G1 X10", "G1 F100"))], sent
    linked.send({"commands": [{"cmd": "cancel", "initiator": "user"}]})
    assert wait_for(lambda: linked.printer_state() == "Operational", 90)


def test_sec07_connect_only_to_a_port_octoprint_offers(linked):
    ack = call(linked, "connect-null", "connect", "/dev/null", 115200)
    assert "error" in ack and "/dev/null" in ack["error"], ack
    assert linked.printer_state() == "Operational"


def test_sec12_heaters_follow_the_printer_profile(linked):
    # OctoPrint's default profile: one extruder, a heated bed, no chamber.
    for ref, heater in (("heat-tool1", "tool1"), ("heat-chamber", "chamber")):
        ack = call(linked, ref, "set_temperature", heater, 40)
        assert "error" in ack, ack
    assert call(linked, "heat-tool0", "set_temperature", "tool0", 0) == {"ref": "heat-tool0", "ret": None}


def test_close_4321_is_reported(linked):
    linked.server.close(TOKEN, 4321, "another device")
    assert wait_for(lambda: linked.status()["remote"]["state"] == "replaced", 10)
    connects = linked.server.connect_count
    time.sleep(2)
    assert linked.server.connect_count == connects  # it stays off


def test_revoked_token_goes_unlinked_within_5_s(linked):
    # Re-link (a restart of the remote link reads the stored token again).
    response = linked.api("POST", "/api/plugin/tsd", json={"command": "reconnect"})
    assert response.status_code == 204
    assert wait_for(lambda: linked.status()["remote"]["state"] == "connected", 30)
    linked.server.tokens.discard(TOKEN)     # the user deleted the printer
    linked.server.close(TOKEN, 1011, "printer deleted")
    start = time.monotonic()
    assert wait_for(lambda: linked.status()["remote"]["state"] == "unauthorized", 10)
    assert time.monotonic() - start < 5
    linked.server.tokens.add(TOKEN)
