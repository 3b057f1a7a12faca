# SPDX-License-Identifier: AGPL-3.0-or-later
"""The G-code around a remote pause: retract and lift, heaters off, and the
way back on resume.

OctoPrint's own pause runs first (``_printer.pause_print()`` waits for the
current move and runs the user's ``afterPrintPaused`` script); our lines are
added to that script through the ``octoprint.comm.protocol.scripts`` hook, once,
and only for a pause that this plugin asked for.

Safety rules the server cannot override:
- never retract with a cold hotend (below MIN_EXTRUDE_TEMP, or unknown);
- never lift above the printer profile's Z maximum (and not at all when the
  current Z is unknown);
- moves are relative (G91/M83) and the previous modes are restored after.
"""

import threading

MIN_EXTRUDE_TEMP = 170.0
RETRACT_FEED = 1800  # mm/min
LIFT_FEED = 600


class ModeTracker:
    """Follows G90/G91 and M82/M83 as OctoPrint sends them to the printer.
    The one record of the printer's modes: the pause G-code restores them,
    and the remote allow-list (remote.Remote) reads them."""

    def __init__(self):
        self.absolute_xyz = True
        self.absolute_e = True

    def on_sent(self, gcode):
        if not gcode:
            return
        code = gcode.upper()
        if code == "G90":
            self.absolute_xyz = True
            self.absolute_e = True  # G90 also sets E absolute unless M83 follows
        elif code == "G91":
            self.absolute_xyz = False
            self.absolute_e = False
        elif code == "M82":
            self.absolute_e = True
        elif code == "M83":
            self.absolute_e = False

    def restore_lines(self):
        return ["G90" if self.absolute_xyz else "G91", "M82" if self.absolute_e else "M83"]


def _fmt(value):
    return ("%.3f" % value).rstrip("0").rstrip(".")


class PauseSequence:
    def __init__(self, logger):
        self._logger = logger
        self._lock = threading.Lock()
        self.modes = ModeTracker()
        self._pause_lines = None
        self._pending_resume = None
        self._resume_lines = None
        self.last_plan = None

    def plan(self, retract, lift_z, tools_off, bed_off, temperatures, current_z, z_max):
        """Computes both scripts. temperatures: OctoPrint's
        get_current_temperatures(); current_z: float or None; z_max: mm."""
        tools = sorted(k for k in temperatures if k.startswith("tool"))
        notes = []
        hot = False
        for tool in tools:
            actual = (temperatures.get(tool) or {}).get("actual")
            if actual is not None and actual >= MIN_EXTRUDE_TEMP:
                hot = True
        do_retract = retract if retract > 0 and hot else 0.0
        if retract > 0 and not hot:
            notes.append("hotend below %d°C, not retracting" % MIN_EXTRUDE_TEMP)
        lift = 0.0
        if lift_z > 0:
            if current_z is None:
                notes.append("current Z unknown, not lifting")
            else:
                lift = max(0.0, min(lift_z, z_max - current_z))
                if lift < lift_z:
                    notes.append("lift limited to %s mm by the printer's Z maximum" % _fmt(lift))

        pause = []
        resume = []
        if do_retract or lift:
            pause += ["G91", "M83"]
            if do_retract:
                pause.append("G1 E-%s F%d" % (_fmt(do_retract), RETRACT_FEED))
            if lift:
                pause.append("G1 Z%s F%d" % (_fmt(lift), LIFT_FEED))
            pause += self.modes.restore_lines()
        if tools_off:
            if len(tools) > 1:
                pause += ["M104 T%s S0" % tool[4:] for tool in tools]
            else:
                pause.append("M104 S0")
        if bed_off and "bed" in temperatures:
            pause.append("M140 S0")

        # Resume: heat back up and wait, then undo the lift and the retraction.
        if tools_off:
            for tool in tools:
                target = (temperatures.get(tool) or {}).get("target") or 0
                if target > 0:
                    if len(tools) > 1:
                        resume.append("M109 T%s S%s" % (tool[4:], _fmt(target)))
                    else:
                        resume.append("M109 S%s" % _fmt(target))
        if bed_off:
            target = (temperatures.get("bed") or {}).get("target") or 0
            if target > 0:
                resume.append("M190 S%s" % _fmt(target))
        if do_retract or lift:
            resume += ["G91", "M83"]
            if lift:
                resume.append("G1 Z-%s F%d" % (_fmt(lift), LIFT_FEED))
            if do_retract:
                resume.append("G1 E%s F%d" % (_fmt(do_retract), RETRACT_FEED))
            resume += self.modes.restore_lines()

        with self._lock:
            self._pause_lines = pause
            self._resume_lines = None
            self._pending_resume = resume
            self.last_plan = {"pause": pause, "resume": resume, "notes": notes}
        return self.last_plan

    def clear(self):
        with self._lock:
            self._pause_lines = None
            self._resume_lines = None
            self._pending_resume = None

    def script_hook(self, comm, script_type, script_name, *args, **kwargs):
        """octoprint.comm.protocol.scripts: adds our lines once."""
        if script_type != "gcode":
            return None
        with self._lock:
            if script_name == "afterPrintPaused" and self._pause_lines is not None:
                lines = self._pause_lines
                self._pause_lines = None
                self._resume_lines = self._pending_resume
                self._pending_resume = None
                return lines, None
            if script_name == "beforePrintResumed" and self._resume_lines is not None:
                lines = self._resume_lines
                self._resume_lines = None
                return lines, None
        return None

    def sent_hook(self, comm, phase, cmd, cmd_type, gcode, *args, **kwargs):
        """octoprint.comm.protocol.gcode.sent: tracks positioning modes."""
        self.modes.on_sent(gcode)
