# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin's metrics in the Prometheus text format (version 0.0.4), for a
farm's Prometheus: ``GET /plugin/tsd/metrics`` with an OctoPrint API key
(``X-Api-Key`` or ``Authorization: Bearer``) of a user with the plugin's
METRICS permission (api.metrics_get). Only counts and states: never a
token, a server address or a file name."""

from . import remote

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The decider's verdicts (decide_verdict_str() in native/core/decide.c).
VERDICTS = ("ok", "warn", "pause")
# The server link's states (remote.py).
LINK_STATES = (remote.STATE_UNLINKED, remote.STATE_CONNECTING, remote.STATE_CONNECTED,
               remote.STATE_DISCONNECTED, remote.STATE_UNAUTHORIZED, remote.STATE_REPLACED,
               remote.STATE_ERROR)


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Text:
    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text, samples):
        """samples: [(labels dict, value)]; a value of None is left out, and a
        family without samples is not written."""
        samples = [(labels, value) for labels, value in samples if value is not None]
        if not samples:
            return
        self.lines.append("# HELP {} {}".format(name, help_text))
        self.lines.append("# TYPE {} {}".format(name, kind))
        for labels, value in samples:
            text = ",".join('{}="{}"'.format(k, _escape(v)) for k, v in sorted(labels.items()))
            self.lines.append("{}{} {}".format(name, "{" + text + "}" if text else "",
                                               float(value) if isinstance(value, float) else int(value)))

    def render(self):
        return "\n".join(self.lines) + "\n"


def document(plugin):
    """The metrics text of this instance, read from the same sources as the
    status document (status.py)."""
    detection = plugin._detection
    watcher = detection.watcher.info() if detection.watcher is not None else {}
    uploader = detection.uploader.info() if detection.uploader is not None else {}
    link = plugin._linking.remote
    remote_info = link.info() if link is not None else {}
    helper = watcher.get("helper") or {}
    last = watcher.get("last") or {}
    link_state = plugin._linking.status().get("state")
    out = _Text()

    out.family("tsd_info", "gauge", "The plugin's version and this instance's name in a farm.",
               [({"version": plugin._plugin_version or "", "printer": plugin._farm.instance or ""}, 1)])
    out.family("tsd_failure_score", "gauge",
               "The detector's failure score of the newest frame, after the decision's smoothing.",
               [({}, last.get("adjusted"))])
    out.family("tsd_failure_probability", "gauge",
               "The detector's raw score of the newest frame, 0 to 1.", [({}, last.get("p"))])
    verdict = last.get("verdict")
    out.family("tsd_verdict", "gauge", "The decision on the newest frame: 1 for the verdict it is.",
               [({"verdict": v}, int(v == verdict)) for v in VERDICTS] if verdict else [])
    out.family("tsd_frames_total", "counter", "Camera frames the detector was given.",
               [({}, watcher.get("frames"))])
    out.family("tsd_detections_total", "counter", "Frames the helper answered.",
               [({}, watcher.get("detections_ok"))])
    out.family("tsd_detection_errors_total", "counter", "Frames the helper did not answer.",
               [({}, watcher.get("detection_errors"))])
    out.family("tsd_frames_late_total", "counter",
               "Frames the shared helper dropped unscored (too late for the deadline).",
               [({}, watcher.get("frames_late", 0))])
    out.family("tsd_failure_actions_total", "counter",
               "Failure actions taken (notify, pause, cancel).", [({}, watcher.get("actions_taken"))])
    out.family("tsd_helper_restarts_total", "counter",
               "Times the inference helper was started again after its first start.",
               [({}, max(0, helper["starts"] - 1) if "starts" in helper else None)])
    out.family("tsd_helper_crashes_total", "counter", "Helper exits that were not asked for.",
               [({}, helper.get("crashes"))])
    out.family("tsd_helper_timeouts_total", "counter", "Helpers killed for missing a deadline.",
               [({}, helper.get("timeouts"))])
    out.family("tsd_helper_latency_seconds", "gauge",
               "Wall time of the newest successful detection.",
               [({}, helper["last_answer_ms"] / 1000.0 if helper.get("answers") else None)])
    out.family("tsd_helper_rss_bytes", "gauge", "Resident memory of the running helper.",
               [({}, helper.get("rss_bytes") or None)])
    out.family("tsd_linked", "gauge", "1 when the printer is linked to a server.",
               [({}, int(bool(plugin._linking.info.get("linked"))))])
    out.family("tsd_link_state", "gauge", "The server link's state: 1 for the state it is in.",
               [({"state": s}, int(s == link_state)) for s in LINK_STATES])
    out.family("tsd_uploads_total", "counter", "Webcam frames posted to the server.",
               [({}, uploader.get("posted"))])
    out.family("tsd_upload_failures_total", "counter", "Webcam frame posts that failed.",
               [({}, uploader.get("failed"))])
    out.family("tsd_remote_commands_total", "counter",
               "The server's commands and calls, by whether they were carried out or refused.",
               [({"result": "accepted"}, remote_info.get("actions_done", 0)),
                ({"result": "refused"}, remote_info.get("actions_refused", 0))])
    return out.render()
