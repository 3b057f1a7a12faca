# SPDX-License-Identifier: AGPL-3.0-or-later
"""The G-code of a remote pause and its resume (octoprint_tsd/pause.py)."""

from unittest import mock

from octoprint_tsd.pause import MIN_EXTRUDE_TEMP, PauseSequence

HOT = {"tool0": {"actual": 210.0, "target": 210.0}, "bed": {"actual": 60.0, "target": 60.0}}


def sequence():
    return PauseSequence(mock.Mock())


def test_retract_and_lift_in_relative_mode_then_modes_restored():
    seq = sequence()
    for code in ("G90", "M82"):
        seq.modes.on_sent(code)
    plan = seq.plan(6.5, 2.5, False, False, HOT, current_z=10.0, z_max=200)
    assert plan["pause"] == ["G91", "M83", "G1 E-6.5 F1800", "G1 Z2.5 F600", "G90", "M82"]
    assert plan["resume"] == ["G91", "M83", "G1 Z-2.5 F600", "G1 E6.5 F1800", "G90", "M82"]
    assert plan["notes"] == []


def test_relative_modes_are_restored_as_found():
    seq = sequence()
    seq.modes.on_sent("G91")
    plan = seq.plan(1, 1, False, False, HOT, current_z=1.0, z_max=200)
    assert plan["pause"][-2:] == ["G91", "M83"]
    seq.modes.on_sent("G90")
    seq.modes.on_sent("M83")
    plan = seq.plan(1, 1, False, False, HOT, current_z=1.0, z_max=200)
    assert plan["pause"][-2:] == ["G90", "M83"]


def test_never_retracts_with_a_cold_hotend():
    cold = {"tool0": {"actual": MIN_EXTRUDE_TEMP - 1, "target": 210.0}}
    plan = sequence().plan(6.5, 2.5, False, False, cold, current_z=5.0, z_max=200)
    assert not any(line.startswith("G1 E") for line in plan["pause"] + plan["resume"])
    assert "G1 Z2.5 F600" in plan["pause"]
    assert any("not retracting" in note for note in plan["notes"])
    unknown = {"tool0": {"actual": None, "target": 0}}
    plan = sequence().plan(6.5, 0, False, False, unknown, current_z=5.0, z_max=200)
    assert plan["pause"] == []


def test_never_lifts_above_z_max():
    plan = sequence().plan(0, 10, False, False, HOT, current_z=195.0, z_max=200)
    assert "G1 Z5 F600" in plan["pause"] and "G1 Z-5 F600" in plan["resume"]
    plan = sequence().plan(0, 10, False, False, HOT, current_z=200.0, z_max=200)
    assert plan["pause"] == []
    plan = sequence().plan(0, 10, False, False, HOT, current_z=None, z_max=200)
    assert plan["pause"] == [] and any("unknown" in n for n in plan["notes"])


def test_heaters_off_and_reheat_before_moving_back():
    plan = sequence().plan(5, 2, True, True, HOT, current_z=1.0, z_max=200)
    assert plan["pause"][-2:] == ["M104 S0", "M140 S0"]
    assert plan["resume"][:2] == ["M109 S210", "M190 S60"]
    assert plan["resume"][2:4] == ["G91", "M83"]


def test_several_tools_are_handled_each():
    temps = {"tool0": {"actual": 200.0, "target": 200.0}, "tool1": {"actual": 190.0, "target": 195.0}}
    plan = sequence().plan(0, 0, True, False, temps, current_z=1.0, z_max=200)
    assert plan["pause"] == ["M104 T0 S0", "M104 T1 S0"]
    assert plan["resume"] == ["M109 T0 S200", "M109 T1 S195"]


def test_script_hook_adds_lines_once_and_only_after_a_planned_pause():
    seq = sequence()
    assert seq.script_hook(None, "gcode", "afterPrintPaused") is None
    plan = seq.plan(6.5, 2.5, False, False, HOT, current_z=1.0, z_max=200)
    assert seq.script_hook(None, "gcode", "beforePrintResumed") is None  # not paused yet
    assert seq.script_hook(None, "gcode", "afterPrintPaused") == (plan["pause"], None)
    assert seq.script_hook(None, "gcode", "afterPrintPaused") is None
    assert seq.script_hook(None, "gcode", "beforePrintResumed") == (plan["resume"], None)
    assert seq.script_hook(None, "gcode", "beforePrintResumed") is None
    # A pause the user makes in OctoPrint gets nothing from us.
    assert seq.script_hook(None, "gcode", "afterPrintPaused") is None


def test_clear_forgets_a_plan():
    seq = sequence()
    seq.plan(6.5, 2.5, False, False, HOT, current_z=1.0, z_max=200)
    seq.clear()
    assert seq.script_hook(None, "gcode", "afterPrintPaused") is None
