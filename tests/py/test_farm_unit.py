# SPDX-License-Identifier: AGPL-3.0-or-later
"""The farm provisioning file in the shim (octoprint_tsd/farm.py) with the
real native parser: where the file and the instance's name come from, what
a file changes, the settings it keeps from being saved, and the codes file
of tsd:link. The parser's own rules are tested in C (tests/c/test_farm.c)."""

from unittest import mock

import pytest

from octoprint_tsd import bridge, cli, farm, settings

FARM = """\
version: 1
server:
  url: https://obico.example.com
detection:
  action: notify
  frame_interval: 15
remote:
  max_tool_temp: 250
  calls: [home, list_files]
printers:
  p2:
    detection: {action: cancel}
"""

pytestmark = pytest.mark.skipif(not bridge.native_available(), reason="native module not built")


class Settings:
    """PluginSettings as far as farm.py uses it."""

    def __init__(self, values=None, appearance=None):
        self.values = dict(settings.defaults(), **(values or {}))
        self.appearance = appearance
        self.saved = 0

    def get(self, path):
        return self.values.get(path[0])

    def set(self, path, value):
        self.values[path[0]] = value

    def save(self):
        self.saved += 1

    def global_get(self, path):
        return self.appearance if path == ["appearance", "name"] else None


def plugin_with(values=None, appearance=None):
    plugin = mock.Mock(name="plugin")
    plugin._settings = Settings(values, appearance)
    return plugin


@pytest.fixture
def farm_file(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(FARM)
    return str(path)


def test_path_and_instance_name():
    assert farm.farm_path({}) == ("/etc/octoprint-tsd/farm.yaml", False)
    assert farm.farm_path({"TSD_FARM_FILE": "/x.yaml"}) == ("/x.yaml", True)
    appearance = {("appearance", "name"): "Prusa 3"}
    get = lambda path: appearance.get(tuple(path))  # noqa: E731
    assert farm.instance_name(get, {}) == "Prusa 3"
    assert farm.instance_name(get, {"TSD_INSTANCE_NAME": "p7"}) == "p7"
    assert farm.instance_name(lambda path: "", {}) is None


def test_start_applies_the_file_and_manages_what_it_sets(farm_file):
    plugin = plugin_with(appearance="p2")
    managed = farm.Farm(plugin)
    managed.load_at_start({"TSD_FARM_FILE": farm_file})
    values = plugin._settings.values
    assert values["server_url"] == "https://obico.example.com"
    assert values["action"] == "cancel"  # p2's override
    assert values["frame_interval"] == 15 and values["max_tool_temp"] == 250.0
    assert values["remote_calls"] == ["home", "list_files"]
    assert plugin._settings.saved == 1
    assert managed.info() == {"file": farm_file, "instance": "p2", "managed": [
        "action", "frame_interval", "max_tool_temp", "remote_calls", "server_url"]}
    assert managed.places["action"] == "detection.action, line 12 column 25"
    # A save keeps what the file manages, and logs the refused change.
    kept = managed.refuse_managed({"action": "pause", "sensitivity": 1.4, "server_url": "https://obico.example.com"})
    assert kept == {"sensitivity": 1.4}
    assert "action is managed by" in plugin._logger.warning.call_args[0][0] % plugin._logger.warning.call_args[0][1:]
    with pytest.raises(farm.FarmError):
        managed.check_server_url("https://elsewhere.example")
    managed.check_server_url("https://obico.example.com")
    managed.check_server_url(None)


def test_the_file_chooses_the_shared_helper(tmp_path):
    """detection.shared_helper: the plugin's shared_helper setting, which
    gives the detector the shared helper's folder (the variable, where set,
    still decides)."""
    import os

    path = tmp_path / "farm.yaml"
    path.write_text("version: 1\ndetection:\n  shared_helper: true\n")
    plugin = plugin_with()
    assert plugin._settings.values["shared_helper"] is False
    managed = farm.Farm(plugin)
    managed.load_at_start({"TSD_FARM_FILE": str(path)})
    assert plugin._settings.values["shared_helper"] is True
    assert managed.info()["managed"] == ["shared_helper"]
    shared = plugin._settings.values["shared_helper"]
    assert farm.detector_options(shared, {}) == {"shared_dir": "/tmp/octoprint-tsd-{}".format(os.geteuid())}
    assert farm.detector_options(shared, {"TSD_SHARED_HELPER": "0"}) == {}
    path.write_text("version: 1\ndetection:\n  shared_helper: maybe\n")
    refused = farm.Farm(plugin_with())
    refused.load_at_start({"TSD_FARM_FILE": str(path)})
    assert "detection.shared_helper" in refused.error


def test_a_refused_file_changes_nothing(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text(FARM.replace("frame_interval: 15", "frame_interval: 500"))
    plugin = plugin_with()
    before = dict(plugin._settings.values)
    managed = farm.Farm(plugin)
    managed.load_at_start({"TSD_FARM_FILE": str(path)})
    assert plugin._settings.values == before and plugin._settings.saved == 0
    assert managed.managed == {} and managed.file is None
    assert "(line 6, column 19)" in managed.error and str(path) in managed.error
    assert managed.refuse_managed({"action": "cancel"}) == {"action": "cancel"}


def test_no_file_at_the_default_path_is_no_farm():
    plugin = plugin_with()
    managed = farm.Farm(plugin)
    with mock.patch.object(farm, "DEFAULT_FARM_FILE", "/nonexistent/farm.yaml"):
        managed.load_at_start({})
    assert managed.info()["file"] is None and managed.error is None
    # A file named by the environment must exist.
    managed.load_at_start({"TSD_FARM_FILE": "/nonexistent/farm.yaml"})
    assert "cannot read /nonexistent/farm.yaml" in managed.error


def test_changes_lists_only_what_differs(farm_file):
    document = farm.load(farm_file, "p1")
    assert not document["instance_known"] and document["printers"] == ["p2"]
    current = Settings({"action": "notify"})
    found = farm.changes(current, document["settings"])
    assert ("action", "notify", "notify") not in found
    assert ("frame_interval", 10, 15) in found
    farm.save(current, found)
    assert farm.changes(current, document["settings"]) == []


def test_a_token_in_the_file_is_refused(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text("version: 1\nprinters:\n  p1:\n    server: {auth_token: 0123456789abcdef}\n")
    with pytest.raises(farm.FarmError) as refused:
        farm.load(str(path), "p1")
    assert "never goes in the farm file" in str(refused.value)
    assert "0123456789abcdef" not in str(refused.value)


@pytest.mark.parametrize("lines, instance, code", [
    (["123456"], None, "123456"),
    (["# codes", "", "123456"], "p1", "123456"),
    (["p1 111111", "p2 222222  # second"], "p2", "222222"),
    (["Prusa MK3 #1 is not a comment here 333333"], "Prusa MK3", None),
    (["Prusa MK3 333333"], "Prusa MK3", "333333"),
    (["p1 111111", "p2 222222"], "p3", None),
    (["p1 111111"], None, None),
    (["111111", "222222"], None, None),
])
def test_codes_file(lines, instance, code):
    if code is None:
        with pytest.raises(ValueError):
            cli.code_for_instance(lines, instance)
    else:
        assert cli.code_for_instance(lines, instance) == code


def test_linking_keeps_to_the_managed_server(farm_file):
    import octoprint_tsd
    from octoprint_tsd.link import LinkError

    plugin = octoprint_tsd.TsdPlugin()
    plugin._logger = mock.Mock(name="_logger")
    plugin._settings = Settings(appearance="p1")
    plugin._farm.load_at_start({"TSD_FARM_FILE": farm_file})
    with mock.patch.object(plugin._linking, "link_with_code") as link:
        with pytest.raises(LinkError) as refused:
            plugin.link_with_code("123456", "https://elsewhere.example")
        assert refused.value.kind == "managed" and farm_file in str(refused.value)
        link.assert_not_called()
        plugin.link_with_code("123456", "https://obico.example.com")
        plugin.link_with_code("123456")
        assert link.call_count == 2
