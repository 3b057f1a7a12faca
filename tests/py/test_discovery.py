# SPDX-License-Identifier: AGPL-3.0-or-later
"""Auto-discovery and the one-time passcode (octoprint_tsd/discovery.py) with
a fake clock, a fake HTTP session and the native parser of the installed
package. No thread, no network: poll_once() is called directly."""

import json
import logging
import re
from unittest import mock

import flask
import pytest

import octoprint_tsd
from octoprint_tsd import discovery as disc
from octoprint_tsd.discovery import Discovery, Refused, address_is_local, peer_address
from octoprint_tsd.link import LinkError

SERVER = "https://obico.example"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Answer:
    def __init__(self, body, status=200):
        self.status_code = status
        self.content = json.dumps(body).encode("utf-8") if not isinstance(body, bytes) else body


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def env():
    clock = Clock()
    session = mock.Mock(name="session")
    session.post.return_value = Answer({"messages": []})
    linked = {"value": False}
    link = mock.Mock(name="link", return_value={"name": "Printer", "token": "t", "server": SERVER})
    logger = logging.getLogger("test.discovery")
    recorder = Recorder()
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    config = {"server_url": SERVER, "ca_file": None, "host_or_ip": "192.168.1.20", "port": 5000}
    d = Discovery(lambda: dict(config), link, lambda: linked["value"], logger, session=session,
                  clock=clock, wall=lambda: 5000.0)
    d._ensure_thread = lambda: None  # the tests drive poll_once() themselves
    yield {"d": d, "clock": clock, "session": session, "link": link, "linked": linked,
           "config": config, "log": recorder}
    logger.removeHandler(recorder)


def sent_bodies(session):
    return [c.kwargs["json"] for c in session.post.call_args_list]


def answer_with(session, *messages, **extra):
    body = {"messages": list(messages)}
    body.update(extra)
    session.post.return_value = Answer(body)


def verify_message(device_id, code="123456", secret=None):
    data = {"code": code}
    if secret is not None:
        data["secret"] = secret
    return {"device_id": device_id, "type": "verify_code", "data": data}


# ---- the window ----

def test_the_window_lasts_ten_minutes(env):
    d, clock = env["d"], env["clock"]
    assert not d.active()
    assert d.start_window("test") is True
    status = d.status()
    assert status["active"] is True and status["until"] == pytest.approx(5000.0 + 600)
    clock.now += 599.9
    assert d.window_active()
    clock.now += 0.2
    assert not d.window_active()
    assert d.status()["active"] is False and d.status()["device_id"] is None
    d.poll_once() if d.active() else None
    assert env["session"].post.call_count == 0


def test_no_window_when_linked(env):
    env["linked"]["value"] = True
    assert env["d"].start_window() is False and env["d"].start_otp() is False
    assert not env["d"].active()


def test_polls_announce_a_private_address_only(env):
    d, session, config = env["d"], env["session"], env["config"]
    d.start_window()
    d.poll_once()
    (body,) = sent_bodies(session)
    assert body["device_id"] == d.device_id and body["host_or_ip"] == "192.168.1.20"
    assert "one_time_passcode" not in body          # only while an admin runs an OTP
    assert session.post.call_args.args[0] == SERVER + "/api/v1/octo/unlinked/"
    assert session.post.call_args.kwargs["allow_redirects"] is False
    config["host_or_ip"] = "8.8.8.8"
    d.poll_once()
    assert session.post.call_count == 1              # a public address is never announced
    assert not d.window_active()


def test_a_4xx_closes_the_window(env):
    d, session = env["d"], env["session"]
    d.start_window()
    session.post.return_value = Answer({"detail": "x"}, status=403)
    d.poll_once()
    assert not d.window_active()


# ---- the secret ----

def test_the_secret_is_handed_out_once_and_only_on_the_lan(env):
    d = env["d"]
    with pytest.raises(Refused):
        d.hand_out_secret(d.device_id, "192.168.1.50")     # no window
    d.start_window()
    with pytest.raises(Refused, match="local network"):
        d.hand_out_secret(d.device_id, "203.0.113.9")
    with pytest.raises(Refused, match="another printer"):
        d.hand_out_secret("0" * 32, "192.168.1.50")
    secret = d.hand_out_secret(d.device_id, "192.168.1.50")
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    with pytest.raises(Refused, match="already handed out"):
        d.hand_out_secret(d.device_id, "192.168.1.50")
    assert secret not in json.dumps(d.status())
    d.start_window("Discover again")
    assert d.hand_out_secret(d.device_id, "127.0.0.1") != secret   # a new secret per window


def test_the_secret_expires(env):
    d, clock = env["d"], env["clock"]
    d.start_window()
    clock.now += disc.SECRET_SECONDS + 1
    with pytest.raises(Refused):
        d.hand_out_secret(d.device_id, "192.168.1.50")


def test_a_matching_message_links_once(env):
    d, session, link = env["d"], env["session"], env["link"]
    d.start_window()
    secret = d.hand_out_secret(d.device_id, "192.168.1.50")
    answer_with(session, verify_message(d.device_id, "654321", secret))
    d.poll_once()
    link.assert_called_once_with("654321")
    assert not d.window_active()
    assert d.status()["last"] == "linked"
    text = "\n".join(env["log"].lines)
    assert secret not in text and "654321" not in text


@pytest.mark.parametrize("what", ["secret", "device_id", "no_secret", "not_handed_out"])
def test_a_mismatched_message_is_refused_and_closes_the_window(env, what):
    d, session, link = env["d"], env["session"], env["link"]
    d.start_window()
    secret = None if what == "not_handed_out" else d.hand_out_secret(d.device_id, "192.168.1.50")
    if what == "secret":
        message = verify_message(d.device_id, secret=secret[:-1] + ("0" if secret[-1] != "0" else "1"))
    elif what == "device_id":
        message = verify_message("f" * 32, secret=secret)
    elif what == "no_secret":
        message = verify_message(d.device_id)
    else:  # the right secret, but no admin ever allowed it to leave the printer
        message = verify_message(d.device_id, secret=d._secret)
    answer_with(session, message)
    d.poll_once()
    link.assert_not_called()
    assert not d.window_active()
    # A second message with the right secret is too late: the window is closed.
    if secret:
        answer_with(session, verify_message(d.device_id, secret=secret))
        d.poll_once() if d.active() else None
        link.assert_not_called()


def test_a_malformed_message_closes_the_window(env):
    d, session, link = env["d"], env["session"], env["link"]
    d.start_window()
    answer_with(session, {"device_id": d.device_id, "type": "verify_code", "data": {"code": "12x"}})
    d.poll_once()
    assert not d.window_active()
    link.assert_not_called()


def test_a_failed_link_still_uses_up_the_secret(env):
    d, session, link = env["d"], env["session"], env["link"]
    link.side_effect = LinkError("wrong_code", "This code is wrong or has expired")
    d.start_window()
    secret = d.hand_out_secret(d.device_id, "192.168.1.50")
    answer_with(session, verify_message(d.device_id, secret=secret))
    d.poll_once()
    assert link.call_count == 1 and not d.window_active()
    assert "wrong or has expired" in d.status()["last"]


def test_an_unusable_answer_is_ignored(env):
    d, session = env["d"], env["session"]
    d.start_window()
    session.post.return_value = Answer(b"<html>not json")
    d.poll_once()
    assert d.window_active()


# ---- the address policy ----

@pytest.mark.parametrize("address, local", [
    ("127.0.0.1", True), ("::1", True), ("192.168.1.10", True), ("10.1.2.3", True),
    ("172.16.0.5", True), ("fd00::1", True), ("::ffff:192.168.1.10", True),
    ("8.8.8.8", False), ("203.0.113.9", False), ("100.64.0.1", False),   # CGNAT is not a LAN
    ("::ffff:8.8.8.8", False), ("0.0.0.0", False), ("", False), (None, False),
    ("printer.local", False), ("192.168.1.10, 8.8.8.8", False), ("2001:4860::8888", False),
    # The rule of native/core/hostrule.c: names (localhost too), link-local,
    # shorthand numeric forms and zone ids are not local; brackets are read.
    ("localhost", False), ("169.254.1.1", False), ("fe80::1", False), ("fd00::1%eth0", False),
    ("127.1", False), ("0x7f000001", False), ("[::1]", True), ("FD00::1", True),
    ("::ffff:127.0.0.1", True),
])
def test_address_is_local(address, local):
    assert address_is_local(address) is local


def test_the_peer_is_remote_addr_and_never_x_forwarded_for():
    environ = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "192.168.1.10",
               "HTTP_X_REAL_IP": "192.168.1.10"}
    assert peer_address(environ) == "203.0.113.9"
    assert not address_is_local(peer_address(environ))
    app = flask.Flask("t")
    with app.test_request_context("/plugin/tsd/discovery", environ_base={"REMOTE_ADDR": "203.0.113.9"},
                                  headers={"X-Forwarded-For": "192.168.1.10"}):
        assert peer_address(flask.request.environ) == "203.0.113.9"


def test_a_forged_forwarded_for_gets_no_secret(env):
    d = env["d"]
    d.start_window()
    environ = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "192.168.1.10"}
    with pytest.raises(Refused, match="local network"):
        d.hand_out_secret(d.device_id, peer_address(environ))


def test_local_address_prefers_a_private_public_host():
    assert disc.local_address("192.168.1.7") == "192.168.1.7"
    found = disc.local_address("8.8.8.8")
    assert found is None or address_is_local(found)


# ---- the one-time passcode ----

def test_otp_shows_the_passcode_and_links_with_the_verification_code(env):
    d, session, link = env["d"], env["session"], env["link"]
    assert d.start_otp() is True
    answer_with(session, one_time_passcode="ab3x9", one_time_passlink="https://x/?p=ab3x9", verification_code="")
    d.poll_once()
    assert sent_bodies(session)[-1]["one_time_passcode"] == ""
    assert d.status()["otp"]["passcode"] == "ab3x9"
    link.assert_not_called()
    answer_with(session, one_time_passcode="ab3x9", verification_code="777888")
    d.poll_once()
    assert sent_bodies(session)[-1]["one_time_passcode"] == "ab3x9"
    link.assert_called_once_with("777888")
    assert not d.otp_active() and d.status()["otp"]["passcode"] is None
    assert "777888" not in "\n".join(env["log"].lines)


def test_otp_lasts_at_most_ten_minutes(env):
    d, clock = env["d"], env["clock"]
    d.start_otp()
    assert d.status()["otp"]["until"] == pytest.approx(5000.0 + 600)
    clock.now += 599
    assert d.otp_active()
    clock.now += 2
    assert not d.otp_active()
    assert "10-minute" in d.status()["last"]


def test_otp_keeps_going_after_a_failed_code(env):
    d, session, link = env["d"], env["session"], env["link"]
    link.side_effect = LinkError("wrong_code", "wrong")
    d.start_otp()
    answer_with(session, one_time_passcode="ab3x9", verification_code="111111")
    d.poll_once()
    assert d.otp_active()


# ---- the plugin's API: admin only ----

@pytest.fixture
def plugin(tmp_path):
    instance = octoprint_tsd.TsdPlugin()
    instance._data_folder = str(tmp_path)
    instance._logger = mock.Mock(name="_logger")
    instance._settings = mock.Mock(name="_settings")
    instance._settings.get.side_effect = lambda path: {"server_url": SERVER}.get(path[0])
    instance._settings.get_boolean.return_value = False
    instance._settings.global_get.return_value = "192.168.1.20"
    instance._plugin_version = "9.9.9"
    instance._identifier = "tsd"
    instance._octoprint_port = 5000
    instance._printer = mock.Mock(name="_printer")
    yield instance
    if instance._discovery is not None:
        instance._discovery.stop()


def api(plugin, command, admin):
    app = flask.Flask("t")
    from octoprint.access.permissions import Permissions

    with app.test_request_context("/api/plugin/tsd", method="POST"):
        with mock.patch.object(type(Permissions.ADMIN), "can", return_value=admin):
            with mock.patch.object(Discovery, "_ensure_thread", lambda self: None):
                try:
                    return plugin.on_api_command(command, {})
                except Exception as exc:  # flask.abort
                    return exc


@pytest.mark.parametrize("command", ["discover", "otp_start", "otp_stop"])
def test_discovery_commands_are_admin_only(plugin, command):
    refused = api(plugin, command, admin=False)
    assert getattr(refused, "code", None) == 403
    assert plugin._discovery is None or not plugin._discovery.active()


def test_an_admin_starts_and_stops_the_otp(plugin):
    response = api(plugin, "otp_start", admin=True)
    assert response.get_json()["otp"]["active"] is True
    assert plugin.discovery().otp_active()
    response = api(plugin, "otp_stop", admin=True)
    assert response.get_json()["otp"]["active"] is False
    response = api(plugin, "discover", admin=True)
    body = response.get_json()
    assert body["active"] is True and "secret" not in json.dumps(body)


def test_status_never_shows_the_secret(plugin):
    with mock.patch.object(Discovery, "_ensure_thread", lambda self: None):
        plugin.discovery().start_window()
    secret = plugin.discovery()._secret
    status = octoprint_tsd.status.admin_document(plugin)
    assert status["discovery"]["active"] is True
    assert secret not in json.dumps(status, default=str)
    # Discovery is the admin's: the viewer document does not even read it.
    viewer = octoprint_tsd.status.viewer_document(plugin)
    assert "discovery" not in viewer and secret not in json.dumps(viewer, default=str)


def test_the_confirmation_page_posts_to_the_server_origin_only():
    html = disc.confirm_page("abc", "https://obico.example:8443", "csrf", "admin<script>")
    assert 'var TARGET_ORIGIN = "https://obico.example:8443";' in html
    assert "postMessage" in html and "'*'" not in html and '"*"' not in html
    assert "admin<script>" not in html
    assert disc.server_origin("https://User@Obico.Example:8443/path") == "https://obico.example:8443"
    assert disc.server_origin("ftp://x") is None
