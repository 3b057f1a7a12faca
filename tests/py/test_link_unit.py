# SPDX-License-Identifier: AGPL-3.0-or-later
"""Linking with a code (octoprint_tsd/link.py) against a fake HTTP session,
and the plugin's link/unlink with the real native token store."""

from unittest import mock

import pytest
import requests

import octoprint_tsd
from octoprint_tsd import bridge
from octoprint_tsd.link import LinkError, check_server_url, verify_code


class Response:
    def __init__(self, status, body=None):
        self.status_code = status
        self._body = body

    def json(self):
        if self._body is None:
            raise ValueError("no json")
        return self._body

    @property
    def content(self):
        # What the native parser (native/core/linkmsg.c) reads.
        import json

        return b"" if self._body is None else json.dumps(self._body).encode("utf-8")


def session(response=None, raises=None):
    fake = mock.Mock()
    if raises:
        fake.post.side_effect = raises
    else:
        fake.post.return_value = response
    return fake


GOOD = Response(200, {"code": "123456", "printer": {"auth_token": "0123456789abcdef0123", "name": "Ender\x07 3"}})


def test_verify_posts_the_code_and_returns_the_token():
    http = session(GOOD)
    result = verify_code("https://app.obico.io/", "123 456", session=http)
    assert result == {"token": "0123456789abcdef0123", "name": "Ender 3", "server": "https://app.obico.io"}
    args, kwargs = http.post.call_args
    assert args == ("https://app.obico.io/api/v1/octo/verify/",)
    assert kwargs["params"] == {"code": "123456"}
    assert kwargs["verify"] is True and kwargs["allow_redirects"] is False


def test_verify_uses_the_configured_ca():
    http = session(GOOD)
    verify_code("https://obico.lan", "123456", ca_file="/etc/my-ca.pem", session=http)
    assert http.post.call_args[1]["verify"] == "/etc/my-ca.pem"


@pytest.mark.parametrize("response, kind", [
    (Response(404, {"detail": "not found"}), "wrong_code"),
    (Response(400, {}), "bad_code"),
    (Response(429, {}), "throttled"),
    (Response(500), "server_error"),
    (Response(200, {"printer": {}}), "server_error"),
    (Response(200, {"printer": {"auth_token": "bad token\r\nx"}}), "server_error"),
    (Response(200), "server_error"),
])
def test_each_failure_has_its_own_kind(response, kind):
    with pytest.raises(LinkError) as error:
        verify_code("https://app.obico.io", "123456", session=session(response))
    assert error.value.kind == kind


def test_unreachable_and_tls_errors():
    with pytest.raises(LinkError) as error:
        verify_code("https://app.obico.io", "123456", session=session(raises=requests.ConnectionError("refused")))
    assert error.value.kind == "unreachable"
    with pytest.raises(LinkError) as error:
        verify_code("https://app.obico.io", "123456", session=session(raises=requests.exceptions.SSLError("bad cert")))
    assert error.value.kind == "tls"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345a", None])
def test_malformed_codes_never_reach_the_server(code):
    http = session(GOOD)
    with pytest.raises(LinkError) as error:
        verify_code("https://app.obico.io", code, session=http)
    assert error.value.kind == "bad_code"
    http.post.assert_not_called()


def test_server_url_policy():
    assert check_server_url("https://app.obico.io/") == "https://app.obico.io"
    assert check_server_url("http://127.0.0.1:3334") == "http://127.0.0.1:3334"
    for url in ("http://obico.example.com", "http://192.168.1.5:3334"):
        with pytest.raises(LinkError) as error:
            check_server_url(url)
        assert error.value.kind == "insecure_url"
    assert check_server_url("http://192.168.1.5:3334", allow_cleartext_lan=True) == "http://192.168.1.5:3334"
    with pytest.raises(LinkError):
        check_server_url("http://8.8.8.8", allow_cleartext_lan=True)  # not a LAN address
    for url in ("ftp://x", "app.obico.io", "https://user:pw@x.io", "https://x.io/?a=1"):
        with pytest.raises(LinkError) as error:
            check_server_url(url)
        assert error.value.kind == "bad_url"



# The cleartext rule is the one in native/core/hostrule.c (issue 11, "Also").
# Before it, link.py took any name starting with "127." for loopback, and
# with allow_cleartext_lan any name ending in .local/.lan/.home.arpa and any
# address Python calls private or link-local (documentation ranges, 0.0.0.0).
@pytest.mark.parametrize("url", [
    "http://127.0.0.1.nip.io:3334",   # a name: the resolver decides where it goes
    "http://127.attacker.example",
    "http://localhost:3334",          # a name too: only an address literal says where
])
def test_cleartext_to_loopback_needs_a_loopback_address(url):
    with pytest.raises(LinkError) as error:
        check_server_url(url)
    assert error.value.kind == "insecure_url"


@pytest.mark.parametrize("url", [
    "http://169.254.10.1", "http://[fe80::1]:3334", "http://0.0.0.0:3334", "http://192.0.2.1",
    "http://printer.local", "http://obico.lan", "http://obico.home.arpa", "http://127.1",
    "http://0x7f000001", "http://[::127.0.0.1]",
])
def test_cleartext_lan_means_a_private_or_loopback_address(url):
    with pytest.raises(LinkError) as error:
        check_server_url(url, allow_cleartext_lan=True)
    assert error.value.kind == "insecure_url"


def test_server_url_scheme_is_case_insensitive():
    assert check_server_url("HTTPS://app.obico.io/") == "https://app.obico.io"
    assert check_server_url("Http://[::ffff:127.0.0.1]:3334") == "http://[::ffff:127.0.0.1]:3334"
    assert check_server_url("HTTP://10.0.0.2:3334", allow_cleartext_lan=True) == "http://10.0.0.2:3334"

@pytest.fixture
def plugin(tmp_path):
    instance = octoprint_tsd.TsdPlugin()
    instance._data_folder = str(tmp_path)
    instance._logger = mock.Mock()
    instance._settings = mock.Mock()
    instance._settings.get.side_effect = lambda path: {"server_url": "https://app.obico.io", "ca_file": ""}.get(path[0])
    instance._settings.get_boolean.return_value = False
    instance._printer = mock.Mock()
    instance._plugin_version = "1"
    yield instance
    instance.on_shutdown()


def test_plugin_link_stores_the_token_and_saves_the_server_after_success(plugin, tmp_path):
    with mock.patch("octoprint_tsd.linking.verify_code", return_value={
            "token": "0123456789abcdef0123", "name": "P1", "server": "https://obico.example"}), \
            mock.patch.object(plugin, "start_remote") as start:
        plugin.link_with_code("123456", "https://obico.example")
    record, error = bridge.load_token(str(tmp_path))
    assert error is None and record["token"] == "0123456789abcdef0123" and record["name"] == "P1"
    plugin._settings.set.assert_called_once_with(["server_url"], "https://obico.example")
    start.assert_called_once()
    for call in plugin._logger.info.call_args_list:
        assert "0123456789abcdef0123" not in str(call)


def test_plugin_link_failure_changes_nothing(plugin, tmp_path):
    with mock.patch("octoprint_tsd.linking.verify_code", side_effect=LinkError("wrong_code", "expired")):
        with pytest.raises(LinkError):
            plugin.link_with_code("123456", "https://obico.example")
    assert bridge.load_token(str(tmp_path)) == (None, None)
    plugin._settings.set.assert_not_called()


def test_plugin_unlink_deletes_the_token(plugin, tmp_path):
    assert bridge.save_token(str(tmp_path), "https://x.io", "0123456789abcdef0123") is None
    assert plugin.unlink() is None
    assert bridge.load_token(str(tmp_path)) == (None, None)
    assert octoprint_tsd.status.viewer_document(plugin)["remote"]["state"] == "unlinked"


def test_sec02_backups_leave_out_the_token_and_its_temporary_copies(plugin, tmp_path):
    assert bridge.save_token(str(tmp_path), "https://x.io", "0123456789abcdef0123") is None
    (tmp_path / "tsd-token.tmp-abc123").write_text("half-written")
    (tmp_path / "detect-state.json").write_text("{}")
    excludes = plugin._linking.backup_excludes([])
    assert excludes == ["tsd-token", "tsd-token.tmp-abc123"]


def test_sec02_a_linked_printer_without_its_token_says_why(plugin, tmp_path):
    with mock.patch("octoprint_tsd.linking.verify_code", return_value={
            "token": "0123456789abcdef0123", "name": "P1", "server": "https://obico.example"}):
        plugin.link_with_code("123456", "https://obico.example", reconnect=False)
    # What a restored backup holds: everything but the token.
    (tmp_path / "tsd-token").unlink()
    assert plugin.start_remote() is False
    admin = octoprint_tsd.status.admin_document(plugin)
    assert admin["link"]["linked"] is False
    assert "backup" in admin["remote"]["detail"] and "link the printer again" in admin["remote"]["detail"]
    assert "0123456789abcdef0123" not in str(admin)
    # Unlinking forgets the link, so a later start is plainly unlinked.
    assert plugin.unlink() is None
    assert plugin.start_remote() is False
    assert octoprint_tsd.status.admin_document(plugin)["remote"] == {"state": "unlinked", "detail": ""}
