# SPDX-License-Identifier: AGPL-3.0-or-later
"""Unit tests of the shim (the plugin class) with mocked _settings, _printer
and _logger. No process is started here."""

from unittest import mock

import pytest
from octoprint.events import Events

import octoprint_tsd
from octoprint_tsd import bridge


@pytest.fixture
def plugin(tmp_path):
    instance = octoprint_tsd.TsdPlugin()
    instance._data_folder = str(tmp_path)
    instance._logger = mock.Mock(name="_logger")
    instance._settings = mock.Mock(name="_settings")
    defaults = instance.get_settings_defaults()
    instance._settings.get.side_effect = lambda path: defaults.get(path[0])
    instance._settings.get_int.side_effect = lambda path: int(defaults[path[0]])
    instance._settings.get_float.side_effect = lambda path: float(defaults[path[0]])
    instance._settings.get_boolean.side_effect = lambda path: bool(defaults.get(path[0]))
    instance._printer = mock.Mock(name="_printer")
    instance._file_manager = mock.Mock(name="_file_manager")
    instance._plugin_version = "9.9.9"
    instance._identifier = "tsd"
    yield instance
    instance.on_shutdown()


def test_settings_defaults_hold_no_secret(plugin):
    defaults = plugin.get_settings_defaults()
    assert defaults["server_url"].startswith("https://")
    assert defaults["allow_cleartext_lan"] is False
    assert defaults["action"] in octoprint_tsd.settings.ACTIONS
    for path in octoprint_tsd.settings.SECRET_SETTING_PATHS:
        assert path[0] not in defaults


def test_settings_version_and_restricted_paths(plugin):
    assert plugin.get_settings_version() == 1
    restricted = plugin.get_settings_restricted_paths()
    assert ["auth_token"] in restricted["never"]
    assert ["server_url"] in restricted["admin"]
    for key in ("max_tool_temp", "max_bed_temp", "max_chamber_temp"):
        assert [key] in restricted["admin"]  # only an admin may change the heater limits


def test_migration_scrubs_a_secret_left_in_config(plugin):
    plugin._settings.get.side_effect = lambda path: "leaked" if path == ["auth_token"] else None
    plugin.on_settings_migrate(1, None)
    plugin._settings.remove.assert_called_once_with(["auth_token"])
    message = " ".join(str(a) for a in plugin._logger.warning.call_args[0])
    assert "leaked" not in message  # the secret itself is never logged


def test_migration_leaves_clean_config_alone(plugin):
    plugin._settings.get.return_value = None
    plugin.on_settings_migrate(1, None)
    plugin._settings.remove.assert_not_called()
    plugin._settings.reset_mock()
    plugin.on_settings_migrate(1, 1)
    plugin._settings.get.assert_not_called()


@pytest.mark.parametrize(
    "incoming, expected",
    [
        ({"action": "cancel"}, {"action": "cancel"}),
        ({"action": "explode"}, {}),
        ({"sensitivity": "1.5"}, {"sensitivity": 1.5}),
        ({"sensitivity": 9}, {"sensitivity": 2.0}),
        ({"sensitivity": 0}, {"sensitivity": 0.2}),
        ({"sensitivity": "lots"}, {}),
        ({"frame_interval": 0}, {"frame_interval": 1}),
        ({"frame_interval": "30"}, {"frame_interval": 30}),
        ({"auth_token": "abc", "server_url": "https://x.example"}, {"server_url": "https://x.example"}),
        # The owner's remote heater limits: a number >= 0, or empty for the ceilings
        # (which the native allow-list applies above any setting).
        ({"max_tool_temp": "250"}, {"max_tool_temp": 250.0}),
        ({"max_bed_temp": -3}, {"max_bed_temp": 0.0}),
        ({"max_chamber_temp": ""}, {"max_chamber_temp": None}),
        ({"max_tool_temp": "hot"}, {}),
    ],
)
def test_settings_save_validates(plugin, incoming, expected):
    with mock.patch("octoprint.plugin.SettingsPlugin.on_settings_save") as base_save:
        plugin.on_settings_save(incoming)
    base_save.assert_called_once_with(plugin, expected)


def test_printer_state_changes_are_recorded(plugin):
    plugin.on_event(Events.PRINTER_STATE_CHANGED, {"state_id": "CONNECTING", "state_string": "Connecting"})
    plugin.on_event(Events.PRINTER_STATE_CHANGED, {"state_id": "OPERATIONAL", "state_string": "Operational"})
    plugin.on_event(Events.CONNECTED, {"port": "VIRTUAL"})
    printer = octoprint_tsd.status.viewer_document(plugin)["printer"]
    assert printer["state"] == "OPERATIONAL"
    assert [entry["state"] for entry in printer["history"]] == ["CONNECTING", "OPERATIONAL"]


def test_state_history_is_bounded(plugin):
    for i in range(octoprint_tsd.status.STATE_HISTORY_MAX * 3):
        plugin.on_event(Events.PRINTER_STATE_CHANGED, {"state_id": "S{}".format(i)})
    history = octoprint_tsd.status.viewer_document(plugin)["printer"]["history"]
    assert len(history) == octoprint_tsd.status.STATE_HISTORY_MAX
    assert history[-1]["state"] == "S{}".format(octoprint_tsd.status.STATE_HISTORY_MAX * 3 - 1)


def test_status_reports_native_module(plugin):
    status = octoprint_tsd.status.viewer_document(plugin)
    assert status["plugin_version"] == "9.9.9"
    assert status["native"]["loaded"] is True
    assert status["native"]["version"] == bridge._tsd.__version__


def test_initialize_logs_native_versions(plugin):
    plugin.initialize()
    plugin._logger.info.assert_called()
    assert "native module loaded" in plugin._logger.info.call_args[0][0]
    plugin._logger.error.assert_not_called()


def test_native_import_failure_is_visible(plugin, monkeypatch):
    monkeypatch.setattr(bridge, "_tsd", None)
    monkeypatch.setattr(bridge, "NATIVE_IMPORT_ERROR", "ImportError: libwebsockets.so.17: cannot open")
    plugin.initialize()
    plugin._logger.error.assert_called_once()
    logged = plugin._logger.error.call_args[0]
    assert "ImportError: libwebsockets.so.17: cannot open" in logged
    status = octoprint_tsd.status.viewer_document(plugin)
    assert status["native"] == {
        "loaded": False,
        "error": "ImportError: libwebsockets.so.17: cannot open",
    }
    # No pump starts without the native core, and nothing crashes.
    with mock.patch("threading.Thread"):
        plugin.on_after_startup()
    assert plugin._pump is None


def test_startup_starts_and_shutdown_stops_the_pump(plugin):
    with mock.patch.object(bridge, "probe_helper", return_value={"available": True, "version": "v"}):
        plugin.on_after_startup()
        pump = plugin._pump
        assert pump is not None and pump.is_running()
        assert plugin._event_queue.push(bridge.EVENT_LOG, b"[tunnel] hello from C")
        assert wait_until(lambda: plugin._logger.info.call_count >= 1)
        plugin.on_shutdown()
        assert not pump.is_running()
        assert plugin._event_queue.stats()["closed"] is True
        plugin.on_shutdown()  # idempotent


def test_helper_probe_result_is_reported(plugin):
    with mock.patch.object(bridge, "probe_helper", return_value={"available": False, "error": "not installed"}):
        plugin._probe_helper()
    assert octoprint_tsd.status.viewer_document(plugin)["helper"] == {"available": False, "error": "not installed"}
    plugin._logger.error.assert_called_once()


def test_api_commands_and_protection(plugin):
    assert plugin.get_api_commands() == {"reconnect": [], "link": ["code"], "unlink": [],
                                         "looks_fine": [], "discover": [], "otp_start": [],
                                         "otp_stop": [], "forget_learned": []}
    assert plugin.is_api_protected() is True
    assert plugin.is_template_autoescaped() is True


def test_update_information(plugin):
    info = plugin.get_update_information()["tsd"]
    assert info["current"] == "9.9.9"
    # The package index is the release channel (docs/packaging.md): the check
    # asks it for the distribution's newest version, and pip installs exactly
    # that version, which brings the native wheel of the same version.
    assert info["type"] == "pypi_release"
    assert info["package"] == "OctoPrint-TSD"
    assert info["pip"].format(target_version="1.2.3") == "OctoPrint-TSD==1.2.3"


def test_plugin_load_registers_implementation_and_hooks():
    octoprint_tsd.__plugin_load__()
    assert isinstance(octoprint_tsd.__plugin_implementation__, octoprint_tsd.TsdPlugin)
    assert "octoprint.plugin.softwareupdate.check_config" in octoprint_tsd.__plugin_hooks__
    assert octoprint_tsd.__plugin_pythoncompat__ == ">=3.9,<4"


def wait_until(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_unlinked_without_a_token_file(plugin):
    assert plugin.start_remote() is False
    assert octoprint_tsd.status.admin_document(plugin)["remote"] == {"state": "unlinked", "detail": ""}
    plugin._logger.error.assert_not_called()


def test_a_corrupt_token_file_means_unlinked_with_a_clear_error(plugin, tmp_path):
    token_file = tmp_path / "tsd-token"
    token_file.write_text("tsd-token v1\nserver https://x\ntoken abc\nsha256 00\n")
    token_file.chmod(0o600)
    assert plugin.start_remote() is False
    remote_state = octoprint_tsd.status.admin_document(plugin)["remote"]
    assert remote_state["state"] == "unlinked"
    assert "corrupt" in remote_state["detail"]
    message = " ".join(str(a) for a in plugin._logger.error.call_args[0])
    assert "corrupt" in message and "abc" not in message


def test_token_round_trip_through_the_bridge(tmp_path):
    from octoprint_tsd import bridge

    assert bridge.load_token(str(tmp_path)) == (None, None)
    assert bridge.save_token(str(tmp_path), "https://app.obico.io", "0123456789abcdef0123", "Prusa") is None
    assert (tmp_path / "tsd-token").stat().st_mode & 0o777 == 0o600
    record, error = bridge.load_token(str(tmp_path))
    assert error is None
    assert record == {"server": "https://app.obico.io", "token": "0123456789abcdef0123", "name": "Prusa"}
    assert bridge.save_token(str(tmp_path), "ftp://bad", "x") is not None
    assert bridge.save_token(str(tmp_path), "https://x", "has space") is not None
    assert bridge.delete_token(str(tmp_path)) is None
    assert bridge.load_token(str(tmp_path)) == (None, None)


def test_settings_updated_reaches_the_running_remote(plugin):
    """A settings save applies the owner's raw G-code and remote-access
    switches to the running link at once (they were skipped while a print-end
    branch swallowed them)."""
    plugin.initialize()
    remote = mock.Mock(name="remote")
    plugin._linking.remote = remote
    plugin._settings.get_boolean.side_effect = lambda path: path == ["allow_raw_gcode"]
    try:
        plugin.on_event("SettingsUpdated", {})
    finally:
        plugin._linking.remote = None
    remote.set_allow_raw_gcode.assert_called_once_with(True)
    remote.set_remote_access.assert_called_once()
