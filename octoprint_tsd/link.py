# SPDX-License-Identifier: AGPL-3.0-or-later
"""Linking a printer to an account with a 6-digit code.

The code comes from the server's web or mobile app; the owner types it into
this OctoPrint (admin only) or passes it to the CLI. That is the proof of
presence: nothing is ever linked because of a network address. The server
answers a valid code with the printer's token, which is stored by the native
token store and never anywhere else.
"""

import ipaddress
import re
from urllib.parse import urlsplit

import requests

from . import bridge

CODE = re.compile(r"^[0-9]{6}$")
VERIFY_PATH = "/api/v1/octo/verify/"
TIMEOUT = 30


class LinkError(Exception):
    """kind: bad_code, wrong_code, throttled, unreachable, tls, insecure_url,
    bad_url, server_error."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _host_is_local(host):
    if host in ("localhost",):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A name: only mDNS-style local names count as LAN.
        return host.endswith(".local") or host.endswith(".lan") or host.endswith(".home.arpa")
    return address.is_private or address.is_loopback or address.is_link_local


def check_server_url(url, allow_cleartext_lan=False):
    """The normalized server URL, or LinkError. https is required; http only
    for loopback, or for a LAN server when the owner allowed cleartext."""
    url = (url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LinkError("bad_url", "The server address must look like https://app.obico.io")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise LinkError("bad_url", "The server address must not contain a user, a query or a fragment")
    if parts.scheme == "http":
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1") or parts.hostname.startswith("127.")
        if not loopback and not (allow_cleartext_lan and _host_is_local(parts.hostname)):
            raise LinkError(
                "insecure_url",
                "http:// sends the printer's token unencrypted. Use https://, or allow an "
                "unencrypted server on your local network in the plugin's settings.",
            )
    return url


def verify_code(server_url, code, ca_file=None, allow_cleartext_lan=False, session=None):
    """Exchanges a code for the printer's token: {"token", "name"}."""
    code = (code or "").strip().replace(" ", "")
    if not CODE.match(code):
        raise LinkError("bad_code", "The code has 6 digits; copy it from the server's app")
    server_url = check_server_url(server_url, allow_cleartext_lan)
    http = session or requests
    try:
        response = http.post(
            server_url + VERIFY_PATH,
            params={"code": code},
            timeout=TIMEOUT,
            verify=ca_file or True,
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as exc:
        raise LinkError("tls", "The server's certificate was not accepted: {}".format(exc))
    except requests.exceptions.RequestException as exc:
        raise LinkError("unreachable", "The server could not be reached: {}".format(exc))
    if response.status_code == 404:
        raise LinkError("wrong_code", "This code is wrong or has expired; get a new one in the app")
    if response.status_code == 400:
        raise LinkError("bad_code", "The server did not accept this code")
    if response.status_code == 429:
        raise LinkError("throttled", "Too many attempts; wait a few minutes and try again")
    if response.status_code != 200:
        raise LinkError("server_error", "The server answered with HTTP {}".format(response.status_code))
    # Parsed and bounded in C (native/core/linkmsg.c); without the native
    # module this is a clear error, never a second parser.
    try:
        parsed = bridge.parse_verify_response(response.content)
    except ValueError as exc:
        raise LinkError("server_error", "The server's answer was not usable: {}".format(exc))
    return {"token": parsed["token"], "name": parsed["name"], "server": server_url}
