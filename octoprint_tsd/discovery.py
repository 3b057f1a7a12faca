# SPDX-License-Identifier: AGPL-3.0-or-later
"""Auto-discovery and the one-time passcode (OTP), hardened.

While the printer is unlinked, and only inside a bounded window (10 minutes
after OctoPrint starts, or after an admin presses "Discover" or starts an
OTP), the plugin announces itself on ``POST /api/v1/octo/unlinked/`` every
3 s. Nothing is ever linked because of a network address:

* Discovery: the server hands the printer ``{device_id, type: "verify_code",
  data: {code, secret}}``. The secret is a fresh ``secrets.token_hex(32)`` per
  window that only a logged-in OctoPrint ADMIN can obtain, from a LAN or
  loopback peer, by clicking "Allow" on the plugin's own page; it can be
  handed out once and expires with the window. A message whose device id or
  secret does not match closes the window: no second guess.
* OTP: only when an admin starts it, for at most 10 minutes; the server's
  passcode is shown to the admin, and a ``verification_code`` the server
  returns is verified like a typed code. It stops after the first link.

The secret and codes are never logged. The peer address is whatever
OctoPrint's WSGI layer puts in ``REMOTE_ADDR`` (Tornado rewrites it from
``X-Forwarded-For`` only for trusted proxies, by default loopback); this
module never reads ``X-Forwarded-For`` itself.
"""

import hmac
import platform
import secrets
import socket
import threading
import time
import uuid

import requests

from . import bridge
from .link import LinkError, check_server_url

UNLINKED_PATH = "/api/v1/octo/unlinked/"
WINDOW_SECONDS = 600.0       # discovery window after start-up or "Discover"
OTP_SECONDS = 600.0          # an admin-started OTP lasts at most this long
SECRET_SECONDS = 600.0       # a discovery secret expires with its window
POLL_SECONDS = 3.0           # the server's presence TTL is 4 s
REQUEST_TIMEOUT = 5.0
MAX_BACKOFF = 30.0
AGENT = "The Spaghetti Detective for OctoPrint"
DISCOVERY_PATH = "/plugin/tsd/discovery"
MAX_INFO_STRING = 253


class Refused(Exception):
    """The discovery page or secret was refused; ``str()`` is safe to show."""


def address_is_local(address):
    """True only for a loopback or private (RFC 1918, fc00::/7) IP address, by
    the one host rule (native/core/hostrule.c, shared with linking and the
    tunnel): an IPv4-mapped IPv6 address counts as its IPv4 address; names
    (localhost included), empty and malformed values, zone ids, public, shared
    (100.64/10, CGNAT), link-local and unspecified addresses are not local."""
    return bridge.host_class(address) in ("loopback", "private")


def peer_address(environ):
    """The peer of a WSGI request: ``REMOTE_ADDR`` only. OctoPrint (Tornado
    with xheaders and its trusted-proxy list) has already replaced it with the
    forwarded client address when, and only when, the connection came from a
    trusted reverse proxy. X-Forwarded-For and X-Real-IP are never read here."""
    return (environ or {}).get("REMOTE_ADDR") or ""


def local_address(preferred=None):
    """A private or loopback address of this machine to announce, or None.
    ``preferred`` (OctoPrint's discovery publicHost) is used when it is one."""
    if address_is_local(preferred):
        return preferred
    for probe in ("10.255.255.255", "192.168.255.255"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((probe, 1))  # UDP: nothing is sent
            address = sock.getsockname()[0]
        except OSError:
            continue
        finally:
            sock.close()
        if address_is_local(address):
            return address
    return None


def _read_small(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_INFO_STRING).strip("\x00\n ")
    except OSError:
        return ""


def device_info(device_id, host_or_ip, port, plugin_version="", printer_profile="", machine_type=""):
    """The JSON body of /unlinked/ (obico-protocol.md 3.3), strings cut to
    253 characters."""
    info = {
        "device_id": device_id,
        "hostname": socket.gethostname(),
        "host_or_ip": host_or_ip,
        "port": port,
        "os": platform.system(),
        "arch": platform.machine(),
        "rpi_model": _read_small("/proc/device-tree/model"),
        "octopi_version": _read_small("/etc/octopi_version"),
        "plugin_version": plugin_version,
        "agent": AGENT,
        "discovery_path": DISCOVERY_PATH,
        "printerprofile": printer_profile,
        "machine_type": machine_type,
    }
    return {k: (v[:MAX_INFO_STRING] if isinstance(v, str) else v) for k, v in info.items()}


def _default_parser():
    from . import bridge

    return bridge.parse_unlinked_response


class Discovery:
    """The discovery window, the OTP and their poll thread.

    ``link(code)`` verifies a code (the plugin's link_with_code: store the
    token, connect) and raises LinkError on failure. ``config()`` returns
    ``{server_url, ca_file, allow_cleartext_lan, host_or_ip, port, ...}`` and
    ``is_linked()`` says whether a token exists. ``clock`` is monotonic
    seconds; ``wall`` is time.time (for the UI's "until")."""

    def __init__(self, config, link, is_linked, logger, session=None, parser=None,
                 clock=time.monotonic, wall=time.time, notify=None):
        self._config = config
        self._link = link
        self._is_linked = is_linked
        self._logger = logger
        self._http = session or requests.Session()
        self._parse = parser or _default_parser()
        self._clock = clock
        self._wall = wall
        self._notify = notify or (lambda event: None)
        self.device_id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._window_until = None     # monotonic end of the discovery window
        self._secret = None           # the window's secret
        self._secret_until = None
        self._secret_handed_out = False
        self._otp_until = None        # monotonic end of the OTP
        self._otp_code = ""           # the server-issued passcode (shown to the admin)
        self._otp_link = ""
        self._last_result = None      # a short, secret-free note for the UI
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._backoff = 0.0

    # ---- windows (any thread) ----

    def start_window(self, reason="start"):
        """Opens (or reopens) the discovery window with a fresh secret."""
        if self._is_linked():
            return False
        with self._lock:
            now = self._clock()
            self._window_until = now + WINDOW_SECONDS
            self._secret = secrets.token_hex(32)
            self._secret_until = now + SECRET_SECONDS
            self._secret_handed_out = False
            self._last_result = None
        self._logger.info("[discovery] announcing this printer on the local network for %d minutes (%s)",
                          int(WINDOW_SECONDS // 60), reason)
        self._ensure_thread()
        return True

    def close_window(self, why=None):
        with self._lock:
            was_open = self._window_until is not None
            self._window_until = None
            self._secret = None
            self._secret_until = None
            self._secret_handed_out = False
            if why:
                self._last_result = why
        if was_open and why:
            self._logger.info("[discovery] window closed: %s", why)
        self._wake.set()

    def start_otp(self):
        """Admin-started one-time passcode, for at most OTP_SECONDS."""
        if self._is_linked():
            return False
        with self._lock:
            self._otp_until = self._clock() + OTP_SECONDS
            self._otp_code = ""
            self._otp_link = ""
            self._last_result = None
        self._logger.info("[otp] one-time passcode started for %d minutes", int(OTP_SECONDS // 60))
        self._ensure_thread()
        self._wake.set()
        return True

    def stop_otp(self, why=None):
        with self._lock:
            was = self._otp_until is not None
            self._otp_until = None
            self._otp_code = ""
            self._otp_link = ""
            if why:
                self._last_result = why
        if was and why:
            self._logger.info("[otp] stopped: %s", why)
        self._wake.set()

    def stop(self):
        """Closes everything and ends the thread (link, shutdown)."""
        self.close_window()
        self.stop_otp()
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(REQUEST_TIMEOUT + 2)

    def _expire(self):
        now = self._clock()
        with self._lock:
            if self._window_until is not None and now >= self._window_until:
                self.close_window("the 10-minute discovery window ended")
            if self._secret_until is not None and now >= self._secret_until:
                self._secret = None
                self._secret_until = None
            if self._otp_until is not None and now >= self._otp_until:
                self.stop_otp("the 10-minute passcode time ended")

    def window_active(self):
        self._expire()
        with self._lock:
            return self._window_until is not None

    def otp_active(self):
        self._expire()
        with self._lock:
            return self._otp_until is not None

    def active(self):
        return self.window_active() or self.otp_active()

    def status(self):
        """For the UI and the status API: never the secret."""
        self._expire()
        now, wall = self._clock(), self._wall()
        with self._lock:
            def until(end):
                return None if end is None else wall + max(0.0, end - now)

            return {
                "active": self._window_until is not None,
                "until": until(self._window_until),
                "device_id": self.device_id if self._window_until is not None else None,
                "otp": {
                    "active": self._otp_until is not None,
                    "until": until(self._otp_until),
                    "passcode": self._otp_code or None,
                    "passlink": self._otp_link or None,
                },
                "last": self._last_result,
            }

    # ---- the secret (OctoPrint's request threads) ----

    def check_request(self, device_id, peer):
        """Raises Refused unless a discovery window is open, the peer is a
        LAN or loopback address and device_id is this printer's."""
        if not address_is_local(peer):
            raise Refused("Linking is only possible from your local network.")
        if not self.window_active():
            raise Refused("This printer is not discoverable now. Press \"Discover\" in the plugin's "
                          "settings in OctoPrint and try again.")
        if not isinstance(device_id, str) or not hmac.compare_digest(
                device_id.encode("utf-8", "replace"), self.device_id.encode("ascii")):
            raise Refused("This link is for another printer.")

    def hand_out_secret(self, device_id, peer):
        """The window's secret, once. The caller has checked that an admin
        confirmed in the browser."""
        self.check_request(device_id, peer)
        with self._lock:
            if self._secret is None:
                raise Refused("The linking secret has expired. Press \"Discover\" again.")
            if self._secret_handed_out:
                raise Refused("This printer's linking secret was already handed out. Press "
                              "\"Discover\" again for a new one.")
            self._secret_handed_out = True
            return self._secret

    # ---- the poll thread ----

    def _ensure_thread(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._stop.clear()
                self._wake.set()
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tsd-discovery", daemon=True)
            self._thread.start()

    def _should_exit(self):
        """Decided under the lock, so that a window opened meanwhile either
        sees this thread still running or starts a new one."""
        with self._lock:
            if self._is_linked():
                self.close_window()
                self.stop_otp()
            if self._stop.is_set() or not self.active():
                if self._thread is threading.current_thread():
                    self._thread = None
                return True
            return False

    def _run(self):
        while not self._should_exit():
            delay = POLL_SECONDS
            try:
                self.poll_once()
                self._backoff = 0.0
            except requests.exceptions.RequestException as exc:
                self._backoff = min(MAX_BACKOFF, max(POLL_SECONDS, self._backoff * 2))
                delay = self._backoff
                self._logger.warning("[discovery] the server could not be reached: %s", str(exc)[:300])
            except Exception:
                self._logger.exception("[discovery] poll failed")
            self._wake.wait(delay)
            self._wake.clear()

    def poll_once(self):
        """One POST /unlinked/ and the handling of its answer."""
        config = self._config()
        try:
            server = check_server_url(config["server_url"], config.get("allow_cleartext_lan", False))
        except LinkError as exc:
            self.close_window("the server address is not usable: {}".format(exc))
            self.stop_otp()
            return
        host = config.get("host_or_ip")
        if not address_is_local(host):
            # Never announce a public address (or none).
            self.close_window("this printer has no private network address to announce")
            self.stop_otp()
            return
        body = device_info(self.device_id, host, config.get("port"), config.get("plugin_version", ""),
                           config.get("printer_profile", ""), config.get("machine_type", ""))
        otp = self.otp_active()
        if otp:
            with self._lock:
                body["one_time_passcode"] = self._otp_code
        response = self._http.post(server + UNLINKED_PATH, json=body, timeout=REQUEST_TIMEOUT,
                                   verify=config.get("ca_file") or True, allow_redirects=False)
        if 400 <= response.status_code < 500:
            self.close_window("the server refused discovery (HTTP {})".format(response.status_code))
            self.stop_otp()
            return
        if response.status_code != 200:
            raise requests.exceptions.RequestException("HTTP {}".format(response.status_code))
        try:
            parsed = self._parse(response.content)
        except ValueError as exc:
            self._logger.warning("[discovery] ignoring an unusable answer from the server: %s", exc)
            return
        self.handle_response(parsed)

    def handle_response(self, parsed):
        """Acts on a parsed /unlinked/ answer (see bridge.parse_unlinked_response)."""
        if parsed.get("invalid"):
            if self.window_active():
                self.close_window("the server sent a malformed link message")
            return
        for message in parsed.get("messages", []):
            if message.get("type") != "verify_code":
                continue
            self._on_verify_code(message)
        if self.otp_active():
            self._on_otp(parsed)

    def _on_verify_code(self, message):
        with self._lock:
            open_window = self._window_until is not None
            secret = self._secret if self._secret_handed_out else None
        if not open_window:
            return
        device_ok = hmac.compare_digest(str(message.get("device_id", "")).encode("utf-8", "replace"),
                                        self.device_id.encode("ascii"))
        given = message.get("secret")
        secret_ok = (secret is not None and isinstance(given, str)
                     and hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("ascii")))
        if not (device_ok and secret_ok):
            self._logger.warning("[discovery] refused a link request whose %s did not match; "
                                 "the window is closed", "device id" if not device_ok else "secret")
            self.close_window("a link request with a wrong secret or device id was refused")
            self._notify({"type": "discovery", "result": "refused"})
            return
        # One attempt per secret, whatever the outcome.
        self.close_window()
        self._try_link(message.get("code"), "discovery")

    def _on_otp(self, parsed):
        passcode = parsed.get("one_time_passcode")
        with self._lock:
            if isinstance(passcode, str) and passcode:
                self._otp_code = passcode
                self._otp_link = parsed.get("one_time_passlink") or ""
        code = parsed.get("verification_code")
        if code:
            if self._try_link(code, "otp"):
                self.stop_otp("linked")

    def _try_link(self, code, how):
        try:
            result = self._link(code)
        except LinkError as exc:
            self._logger.warning("[%s] linking failed (%s)", how, exc.kind)
            with self._lock:
                self._last_result = "linking failed: {}".format(exc)
            self._notify({"type": "discovery", "result": "failed", "error": exc.kind})
            return False
        with self._lock:
            self._last_result = "linked"
        self._logger.info("[%s] linked", how)
        self.close_window()
        self.stop_otp()
        self._stop.set()
        self._notify({"type": "discovery", "result": "linked",
                      "printer_name": (result or {}).get("name")})
        return True


# ---- the confirmation page (served by the plugin's blueprint) ----

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>The Spaghetti Detective: link this printer</title>
<style>body{{font-family:sans-serif;max-width:34em;margin:3em auto;padding:0 1em}}
.refused{{color:#b94a48}} button{{font-size:1.1em;padding:.5em 1em}}</style>
</head><body>
<h1>Link this printer</h1>
{body}
</body></html>
"""


def _escape(text):
    from markupsafe import escape

    return str(escape(text))


def refused_page(reason):
    """The page a non-admin, a logged-out user or a non-LAN peer gets: no secret."""
    return _PAGE.format(body='<p id="tsd_discovery_refused" class="refused"><strong>Linking refused.</strong> '
                             '{}</p>'.format(_escape(reason)))


def server_origin(server_url):
    """scheme://host[:port] of the configured server: the only origin the
    secret is posted to."""
    from urllib.parse import urlsplit

    parts = urlsplit(server_url or "")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return "{}://{}".format(parts.scheme, parts.netloc.rsplit("@", 1)[-1]).lower()


def confirm_page(device_id, target_origin, csrf_token, user):
    """The admin's confirmation page. The secret is not in it: it is fetched
    (POST, CSRF-protected, admin only) when the admin clicks "Allow", then
    posted to window.opener with the server's origin as targetOrigin."""
    import json

    def js(value):
        return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    body = """<p>The server at <strong id="tsd_discovery_origin">{origin}</strong> asks to link this printer
to the account that is signed in there. You are signed in to OctoPrint as <strong>{user}</strong>.</p>
<p>Only allow this if you started linking in that server's app just now.</p>
<p><button id="tsd_discovery_allow" type="button">Allow linking to this account</button></p>
<p id="tsd_discovery_result" role="status"></p>
<script>
(function () {{
  var TARGET_ORIGIN = {origin_js};
  var DEVICE_ID = {device_js};
  var CSRF_TOKEN = {csrf_js};
  var result = document.getElementById("tsd_discovery_result");
  var button = document.getElementById("tsd_discovery_allow");
  window.tsdTargetOrigin = TARGET_ORIGIN;
  button.addEventListener("click", function () {{
    if (!window.opener) {{
      result.textContent = "Open this page from the server's app: there is nothing to link.";
      return;
    }}
    button.disabled = true;
    fetch("discovery/allow", {{
      method: "POST", credentials: "same-origin",
      headers: {{"Content-Type": "application/json", "X-CSRF-Token": CSRF_TOKEN}},
      body: JSON.stringify({{device_id: DEVICE_ID}})
    }}).then(function (response) {{
      return response.json().then(function (body) {{ return {{ok: response.ok, body: body}}; }});
    }}).then(function (answer) {{
      if (!answer.ok) {{
        result.textContent = answer.body.message || "Refused.";
        return;
      }}
      // Only the configured server's origin may receive the secret (no wildcard).
      window.opener.postMessage({{device_id: DEVICE_ID, device_secret: answer.body.device_secret}},
                                TARGET_ORIGIN);
      result.textContent = "Done: the server will link this printer. You can close this window now.";
    }}).catch(function () {{
      result.textContent = "OctoPrint could not be reached.";
      button.disabled = false;
    }});
  }});
}})();
</script>""".format(origin=_escape(target_origin), user=_escape(user or "?"), origin_js=js(target_origin),
                    device_js=js(device_id), csrf_js=js(csrf_token))
    return _PAGE.format(body=body)
