# SPDX-License-Identifier: AGPL-3.0-or-later
"""Linking a printer to an account with a 6-digit code.

The code comes from the server's web or mobile app; the owner types it into
this OctoPrint (admin only) or passes it to the CLI. That is the proof of
presence: nothing is ever linked because of a network address. The server
answers a valid code with the printer's token, which is stored by the native
token store and never anywhere else.
"""

import re

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


def check_server_url(url, allow_cleartext_lan=False):
    """The normalized server URL (scheme in lower case, no trailing slash), or
    LinkError. https is required; http only where the one host rule
    (native/core/hostrule.c, shared with the tunnel and discovery) allows it:
    to a loopback address, or to a private LAN address when the owner allowed
    cleartext. A name (localhost included) is never either."""
    url = (url or "").strip().rstrip("/")
    try:
        parsed = bridge.check_server_url(url, allow_cleartext_lan)
    except ValueError as exc:
        if getattr(exc, "code", None) == "insecure_url":
            raise LinkError(
                "insecure_url",
                "http:// sends the printer's token unencrypted. Use https://, or give the server's "
                "address: 127.0.0.1 for this machine, or a local network address such as "
                "192.168.1.5 when an unencrypted server on your local network is allowed in the "
                "plugin's settings.",
            )
        raise LinkError("bad_url", "The server address must look like https://app.obico.io ({})".format(exc))
    if parsed["scheme"] not in ("https", "http"):
        raise LinkError("bad_url", "The server address must look like https://app.obico.io")
    return parsed["scheme"] + url[len(parsed["scheme"]):]


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
