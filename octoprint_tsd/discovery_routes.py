# SPDX-License-Identifier: AGPL-3.0-or-later
"""The discovery routes of the plugin's blueprint (``/plugin/tsd/discovery``
and ``/plugin/tsd/discovery/allow``) and what discovery.py needs from the
plugin. The protocol itself is in discovery.py; see docs/security.md for who
may do what."""

import flask

from .discovery import Refused, confirm_page, local_address, peer_address, refused_page, server_origin

SIGN_IN = "Sign in to OctoPrint as an administrator, then try again."
ADMINS_ONLY = "Only an OctoPrint administrator can link this printer."


def config(plugin):
    """Discovery's view of the settings (read at each announcement)."""
    settings = plugin._settings
    global_get = getattr(settings, "global_get", None)
    public_host = global_get(["plugins", "discovery", "publicHost"]) if global_get else None
    public_port = global_get(["plugins", "discovery", "publicPort"]) if global_get else None
    return {
        "server_url": settings.get(["server_url"]),
        "ca_file": settings.get(["ca_file"]) or None,
        "allow_cleartext_lan": bool(settings.get_boolean(["allow_cleartext_lan"])),
        "host_or_ip": local_address(public_host),
        "port": public_port or plugin._octoprint_port,
        "plugin_version": plugin._plugin_version or "",
        "printer_profile": str(plugin.current_printer_profile().get("name") or ""),
    }


def notify(plugin, event):
    manager = getattr(plugin, "_plugin_manager", None)
    if manager is not None:
        manager.send_plugin_message(plugin._identifier, event)


def _user():
    """(is_admin, name) of the request's OctoPrint user."""
    from octoprint.access.permissions import Permissions

    import flask_login

    user = flask_login.current_user
    if user is None or user.is_anonymous or not user.is_active:
        return False, None
    return bool(Permissions.ADMIN.can()), user.get_id()


def _html(html, status):
    response = flask.make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def page(plugin):
    """The page the server's app opens in a popup on the printer's LAN
    address. Logged-in admins only; it holds no secret."""
    admin, name = _user()
    if not admin:
        return _html(refused_page(SIGN_IN if name is None else ADMINS_ONLY), 403)
    try:
        plugin.discovery().check_request(flask.request.args.get("device_id", ""),
                                         peer_address(flask.request.environ))
    except Refused as exc:
        return _html(refused_page(str(exc)), 403)
    origin = server_origin(plugin._settings.get(["server_url"]))
    if origin is None:
        return _html(refused_page("No server is configured."), 403)
    from octoprint.server.util.csrf import generate_csrf_token

    csrf = generate_csrf_token()
    response = _html(confirm_page(plugin.discovery().device_id, origin, csrf, name), 200)
    response.set_cookie("csrf_token", csrf, httponly=False)
    return response


def allow(plugin):
    """An admin clicked "Allow": the window's secret, once, as JSON (the
    page posts it to the server's origin only)."""
    admin, _ = _user()
    if not admin:
        return flask.make_response(flask.jsonify(error="forbidden", message=ADMINS_ONLY), 403)
    body = flask.request.get_json(silent=True) or {}
    try:
        secret = plugin.discovery().hand_out_secret(body.get("device_id", ""),
                                                    peer_address(flask.request.environ))
    except Refused as exc:
        return flask.make_response(flask.jsonify(error="refused", message=str(exc)), 403)
    plugin._logger.info("[discovery] an admin allowed linking from the server's app")
    response = flask.jsonify(device_secret=secret)
    response.headers["Cache-Control"] = "no-store"
    return response


def forbidden(error):
    # OctoPrint's login check refuses logged-out users before the view
    # runs: give the discovery page a clear answer instead of a bare 403.
    if flask.request.path.rstrip("/").endswith("/discovery"):
        return _html(refused_page(SIGN_IN), 403)
    return error
