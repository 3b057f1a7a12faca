# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint remote access (the server's http.tunnelv2): where the native
workers reach OctoPrint, the outside address OctoPrint sees tunnelled
requests come from, whether OctoPrint would treat them as local anyway, and
the log line of every login through the tunnel.

The workers (native/core/httptunnel.c) replay each browser request against
OctoPrint with ``X-Forwarded-For: <outside address>`` after removing every
forwarding header the browser sent. OctoPrint takes the client address
from that header when the connection comes from a trusted proxy (loopback,
by default), so it sees the tunnelled browser at that address: no
autologin for local networks, no loopback trust. The address is a
documentation address (RFC 5737) that is in none of the printer's own
networks and none of OctoPrint's localNetworks (one of them may well be a
LAN: this module checks rather than assumes). Where OctoPrint's settings
would still make a tunnelled request local (autologin on, and loopback not
trusted as a proxy or every candidate inside localNetworks), remote access
is refused, with the reason in the log."""

import ipaddress

# RFC 5737 documentation ranges: never routed on the internet. The first
# that is none of the printer's networks is used.
OUTSIDE_CANDIDATES = ("198.51.100.1", "203.0.113.1", "192.0.2.1")


def octoprint_address(bind_host, port):
    """(host, port) the workers connect to: OctoPrint's own listener. A
    wildcard or missing bind address means loopback; a specific numeric
    address is used as it is (the connection then comes from it)."""
    host = (bind_host or "").strip().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1", port
    if address.is_unspecified:
        return "127.0.0.1", port
    return str(address), port


def _local_networks(settings):
    import netaddr

    networks = netaddr.IPSet()
    for network in settings.get(["accessControl", "localNetworks"]) or []:
        try:
            networks.add(network)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            continue
    return networks


def outside_address(settings):
    """The address OctoPrint is told tunnelled requests come from: outside
    the printer's networks (OctoPrint's own LAN test) and localNetworks."""
    from octoprint.util.net import is_lan_address

    networks = _local_networks(settings)
    for candidate in OUTSIDE_CANDIDATES:
        if not is_lan_address(candidate) and candidate not in networks:
            return candidate
    return OUTSIDE_CANDIDATES[0]  # local_trust_problem() refuses it where that matters


def local_trust_problem(settings, source, outside):
    """None when OctoPrint treats a tunnelled request (from ``source``, with
    X-Forwarded-For ``outside``) as coming from outside its local networks,
    or when that would not matter (autologin for local networks is off);
    otherwise why remote access must stay off. ``settings``: OctoPrint's
    settings()."""
    if not settings.getBoolean(["accessControl", "autologinLocal"]):
        return None
    import netaddr
    from octoprint.util.net import get_http_client_ip, usable_trusted_proxies_from_settings

    seen_as = get_http_client_ip(source, outside, usable_trusted_proxies_from_settings(settings))
    try:
        local = netaddr.IPAddress(seen_as) in _local_networks(settings)
    except (netaddr.AddrFormatError, ValueError):
        local = True  # OctoPrint would not understand it either: refuse
    if not local:
        return None
    return ("OctoPrint's autologin for local networks is on, and OctoPrint would see a "
            "remote-access request as coming from {} (a local address): remote access stays "
            "off. Keep server.reverseProxy.trustLocalhostProxies on and {} out of "
            "accessControl.localNetworks, or turn autologin off.".format(seen_as, outside))


def log_login(logger, text):
    """A TUNNEL_EVENT_REMOTE_LOGIN: {"status": N, "user": name}. The name is
    OctoPrint's; passwords and cookies never reach this."""
    import json

    try:
        event = json.loads(text)
        status = int(event.get("status"))
        user = str(event.get("user") or "")
    except (ValueError, TypeError, AttributeError):
        return
    if status == 200 and user:
        logger.info("[remote access] %r logged in to OctoPrint through the server's remote "
                       "access", user)
    else:
        logger.warning("[remote access] a login to OctoPrint through the server's remote access "
                       "failed (HTTP %d)", status)


class _GlobalSettings:
    """OctoPrint's settings through the plugin's own settings object, with
    the names octoprint.util.net's helpers call."""

    def __init__(self, plugin_settings):
        self._settings = plugin_settings

    def get(self, path):
        return self._settings.global_get(path)

    def getBoolean(self, path):
        return self._settings.global_get_boolean(path)

    def getInt(self, path):
        return self._settings.global_get_int(path)


def tunnel_options(plugin):
    """The native Tunnel's remote-access options: where OctoPrint listens,
    the outside address, and whether remote access may answer now (the
    owner's setting, and no local-trust problem, which is logged). Settings
    that cannot be read leave remote access off, never on."""
    try:
        settings = _GlobalSettings(plugin._settings)
        port = int(plugin._octoprint_port or settings.getInt(["server", "port"]) or 5000)
        host, port = octoprint_address(settings.get(["server", "host"]), port)
        outside = outside_address(settings)
        enabled = plugin._settings.get_boolean(["remote_access"]) is True
        problem = local_trust_problem(settings, host, outside) if enabled else None
    except Exception:
        plugin._logger.exception("[remote access] OctoPrint's settings could not be read; "
                                 "remote access stays off")
        return {"remote_access": False}
    if problem:
        plugin._logger.error("[remote access] %s", problem)
    return {"octoprint_port": port, "octoprint_host": host, "remote_address": outside,
            "remote_access": enabled and not problem}
