# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin's REST API (``/api/plugin/tsd`` and ``/plugin/tsd/frame.jpg``).

One function per permission tier, each checking its own permission first:
  - :func:`status_get`: OctoPrint's STATUS permission (the viewer document),
    and ADMIN for the admin document (status.py);
  - :func:`frame_get`: WEBCAM;
  - :func:`metrics_get`: the plugin's own METRICS permission (Prometheus);
  - :func:`print_command`: PRINT (saying a print looks fine);
  - :func:`admin_command`: ADMIN (linking, unlinking, reconnecting,
    forgetting what "looks fine" taught,
    discovery and the one-time passcode: typing a code here is the proof
    of presence).
"""

import flask

from . import bridge, metrics
from .link import LinkError
from .status import admin_document, viewer_document

PRINT_COMMANDS = {"looks_fine": []}
ADMIN_COMMANDS = {"reconnect": [], "link": ["code"], "unlink": [], "forget_learned": [],
                  "discover": [], "otp_start": [], "otp_stop": []}
COMMANDS = {**ADMIN_COMMANDS, **PRINT_COMMANDS}


def _permissions():
    from octoprint.access.permissions import Permissions

    return Permissions


def _error(status, kind, message):
    return flask.make_response(flask.jsonify(error=kind, message=message), status)


def status_get(plugin, request):
    permissions = _permissions()
    if not permissions.STATUS.can():
        flask.abort(403)
    status = viewer_document(plugin)
    if permissions.ADMIN.can():
        # Built only here, after the admin check: the passcode, discovery
        # and the link's details (docs/security.md, "Who may read what").
        status.update(admin_document(plugin))
    watcher = plugin._detection.watcher
    if "history" in request.values and watcher is not None:
        status["detect_history"] = watcher.history_points()
    return flask.jsonify(status)


def frame_get(plugin):
    """The newest camera frame the detector saw, or with ?evidence=1 the
    frame that triggered this print's action (the tab's "why")."""
    if not _permissions().WEBCAM.can():
        flask.abort(403)
    watcher = plugin._detection.watcher
    if flask.request.args.get("evidence"):
        frame = watcher.evidence_frame() if watcher is not None else None
    else:
        latest = watcher.latest if watcher is not None else None
        frame = (latest[0], latest[3]) if latest is not None else None
    if frame is None:
        flask.abort(404)
    response = flask.make_response(frame[0])
    response.headers["Content-Type"] = "image/jpeg"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Seq"] = str(frame[1])
    return response


def metrics_get(plugin):
    """The Prometheus text (metrics.py) for users with the plugin's METRICS
    permission (PLUGIN_TSD_METRICS; admins have it)."""
    permission = getattr(_permissions(), "PLUGIN_TSD_METRICS", None)
    if permission is None or not permission.can():
        flask.abort(403)
    response = flask.make_response(metrics.document(plugin))
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response


def command(plugin, name, data):
    if name in PRINT_COMMANDS:
        return print_command(plugin, name)
    return admin_command(plugin, name, data)


def print_command(plugin, name):
    # Anyone who may control a print may say it looks fine.
    if not _permissions().PRINT.can():
        flask.abort(403)
    watcher = plugin._detection.watcher
    if watcher is None:
        return flask.make_response(flask.jsonify(error="detection is not running"), 409)
    return flask.jsonify(bending_factor=watcher.looks_fine())


def admin_command(plugin, name, data):
    if not _permissions().ADMIN.can():
        flask.abort(403)
    if name == "reconnect":
        plugin.start_remote()
        return flask.make_response("", 204)
    if name == "link":
        try:
            result = plugin.link_with_code(data.get("code"), data.get("server_url"))
        except LinkError as exc:
            return _error(400, exc.kind, str(exc))
        return flask.jsonify(linked=True, printer_name=result["name"], server=result["server"])
    if name == "unlink":
        error = plugin.unlink()
        if error:
            return _error(500, "io", error)
        return flask.make_response("", 204)
    if name in ("discover", "otp_start", "otp_stop"):
        return _discovery_command(plugin, name)
    if name == "forget_learned":
        watcher = plugin._detection.watcher
        if watcher is None:
            return flask.make_response(flask.jsonify(error="detection is not running"), 409)
        return flask.jsonify(forgotten=watcher.forget_learned())
    flask.abort(400)


def _discovery_command(plugin, name):
    if not bridge.native_available():
        return _error(409, "native", bridge.NATIVE_IMPORT_ERROR)
    if plugin._linking.info.get("linked") and name != "otp_stop":
        return _error(409, "linked", "The printer is already linked")
    discovery = plugin.discovery()
    if name == "discover":
        discovery.start_window("an admin pressed Discover")
    elif name == "otp_start":
        discovery.start_otp()
    else:
        discovery.stop_otp("stopped by an admin")
    return flask.jsonify(discovery.status())
