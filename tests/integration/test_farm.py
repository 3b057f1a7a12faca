# SPDX-License-Identifier: AGPL-3.0-or-later
"""A print farm (issue 14): three real OctoPrint instances on this machine,
provisioned from one farm file, as a farm admin runs them.

- farm-a and farm-b find their names in $TSD_INSTANCE_NAME, farm-c in its
  OctoPrint title (appearance.name); farm-c has no overrides in the file.
- The file points every instance at the reference server (with its CA):
  settings are checked through OctoPrint's settings API, the settings API
  refuses to change what the file manages, and Chromium shows those settings
  read-only with "managed by <file>" (screenshots farm_*.png in
  build/test-output/screenshots).
- tsd:link --codes links each instance with its own line of one codes file
  (stdin for one of them), tsd:status --json reports it, and the metrics
  endpoint (admin API key; 403 without the plugin's permission) passes
  promtool and says "linked".
- A broken file is refused with its line and column by tsd:apply and at
  start, and nothing changes; tsd:apply's dry run changes nothing either.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import requests
import yaml

from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, VIEWER, keep_octoprint_logs, output_dir, wait_for

NAMES = ("farm-a", "farm-b", "farm-c")
FARM = """\
version: 1
server:
  url: {server}
  ca_file: {ca}
detection:
  action: pause
  frame_interval: 20
remote:
  allow_raw_gcode: false
  max_tool_temp: 250
  calls: [home, set_temperature, list_files]
printers:
  farm-a:
    detection: {{action: cancel}}
  farm-b:
    detection: {{frame_interval: 30}}
    remote: {{max_tool_temp: 240}}
"""
# What each instance must end up with.
EXPECTED = {
    "farm-a": {"action": "cancel", "frame_interval": 20, "max_tool_temp": 250.0},
    "farm-b": {"action": "pause", "frame_interval": 30, "max_tool_temp": 240.0},
    "farm-c": {"action": "pause", "frame_interval": 20, "max_tool_temp": 250.0},
}
# Line 7, column 3: a typo the file's reader must point at.
BROKEN = FARM.replace("  frame_interval: 20\n", "  frame_intervall: 20\n", 1)


class Farm:
    def __init__(self, work, server, pki):
        self.work = work
        self.server = server
        self.file = os.path.join(work, "farm.yaml")
        with open(self.file, "w") as f:
            f.write(FARM.format(server=server.endpoint_prefix, ca=pki["ca"]))
        self.broken = os.path.join(work, "broken.yaml")
        with open(self.broken, "w") as f:
            f.write(BROKEN.format(server=server.endpoint_prefix, ca=pki["ca"]))
        self.instances = {}
        self.keys = {}

    def api(self, name, method, path, key=None, **kwargs):
        return requests.request(method, self.instances[name].url + path,
                                headers={"X-Api-Key": key or self.keys[name]}, timeout=30, **kwargs)

    def cli(self, name, *args, stdin=None):
        instance = self.instances[name]
        done = subprocess.run(
            [instance.python, "-m", "octoprint", "--basedir", instance.basedir, "plugins"] + list(args),
            cwd=instance.basedir, env=instance.env, input=stdin, capture_output=True, text=True,
            timeout=180)
        return done.returncode, done.stdout + done.stderr

    def config_text(self, name):
        with open(os.path.join(self.instances[name].basedir, "config.yaml")) as f:
            return f.read()

    def tsd_settings(self, name):
        return self.api(name, "GET", "/api/settings").json()["plugins"]["tsd"]

    def restart(self, name, farm_file):
        instance = self.instances[name]
        instance.stop()
        instance.env["TSD_FARM_FILE"] = farm_file
        instance.start()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("farm"))
    pki = make_pki(os.path.join(work, "pki"))
    server = ReferenceServer([], pki=pki).start()
    rig = Farm(work, server, pki)
    try:
        for name in NAMES:
            env = dict(os.environ, TSD_FARM_FILE=rig.file)
            env.pop("TSD_INSTANCE_NAME", None)
            if name != "farm-c":
                env["TSD_INSTANCE_NAME"] = name
            instance = OctoPrintInstance(os.path.join(work, name), python=sys.executable, env=env)
            instance.prepare(users=[ADMIN + (True,), VIEWER + (False,)])
            if name == "farm-c":  # its name is OctoPrint's own title
                path = os.path.join(instance.basedir, "config.yaml")
                with open(path) as f:
                    config = yaml.safe_load(f)
                config.setdefault("appearance", {})["name"] = name
                with open(path, "w") as f:
                    yaml.safe_dump(config, f)
            rig.instances[name] = instance
            instance.start()
            rig.keys[name] = instance.create_api_key(*ADMIN)
        yield rig
    finally:
        for name, instance in rig.instances.items():
            instance.stop()
            keep_octoprint_logs(instance.basedir, "farm-" + name)
        server.stop()


def test_three_instances_take_their_settings_from_one_file(farm):
    for name in NAMES:
        got = farm.tsd_settings(name)
        for key, value in EXPECTED[name].items():
            assert got[key] == value, (name, key, got[key])
        assert got["server_url"] == farm.server.endpoint_prefix
        assert got["remote_calls"] == ["home", "set_temperature", "list_files"]
        assert got["allow_raw_gcode"] is False
        status = farm.api(name, "GET", "/api/plugin/tsd").json()
        assert status["farm"]["file"] == farm.file and status["farm"]["instance"] == name
        assert "action" in status["farm"]["managed"] and "sensitivity" not in status["farm"]["managed"]
        assert status["farm"]["error"] is None
        assert status["farm"]["places"]["server_url"] == "server.url, line 3 column 8"


def test_the_settings_api_refuses_what_the_file_manages(farm):
    before = farm.tsd_settings("farm-a")
    response = farm.api("farm-a", "POST", "/api/settings", json={"plugins": {"tsd": {
        "action": "notify", "frame_interval": 5, "server_url": "https://elsewhere.example",
        "remote_calls": None, "sensitivity": 1.3}}})
    assert response.status_code == 200, response.text
    after = farm.tsd_settings("farm-a")
    for key in ("action", "frame_interval", "server_url", "remote_calls"):
        assert after[key] == before[key], key
    assert after["sensitivity"] == 1.3  # not managed: saved as usual
    with open(farm.instances["farm-a"].octoprint_log) as f:
        assert "not saved: action is managed by " + farm.file in f.read()


def test_managed_settings_are_read_only_in_the_ui(farm, browser):
    from tsd_testing import browser_login

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        browser_login(page, farm.instances["farm-b"].url, *ADMIN)
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        page.wait_for_selector("#tsd_farm_managed", state="visible", timeout=30000)
        assert farm.file in page.locator("#tsd_farm_managed").text_content()
        for managed in ("#tsd_server_url", "#tsd_ca_file", "#tsd_action", "#tsd_frame_interval",
                        "#tsd_max_tool_temp", "#tsd_allow_raw_gcode"):
            assert page.locator(managed).is_disabled(), managed
        for free in ("#tsd_sensitivity", "#tsd_webcam", "#tsd_detection_enabled",
                     "#tsd_max_bed_temp"):
            assert page.locator(free).is_enabled(), free
        assert page.locator("#tsd_frame_interval").input_value() == "30"
        notes = page.locator("#tsd_settings .tsd-managed-note:visible").all_text_contents()
        assert notes and all(text.strip() == "managed by " + farm.file for text in notes), notes
        assert page.locator("#tsd_remote_calls").text_content() == "home, set_temperature, list_files"
        assert not page.locator("#tsd_farm_error").is_visible()
        page.wait_for_selector("#settings_dialog.in", timeout=10000)
        page.wait_for_timeout(600)
        shots = output_dir("screenshots")
        page.screenshot(path=os.path.join(shots, "farm_managed_settings.png"))
        page.locator("#tsd_model_config").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=os.path.join(shots, "farm_managed_detection.png"))
        assert not [e for e in errors if "tsd" in e.lower()], errors
    finally:
        page.close()


def test_linking_many_printers_from_one_codes_file(farm):
    codes = {name: farm.server.issue_code(printer_name=name) for name in NAMES}
    codes_file = os.path.join(farm.work, "codes.txt")
    with open(codes_file, "w") as f:
        f.write("# one per printer\n")
        f.write("".join("{} {}\n".format(name, codes[name]) for name in NAMES[:2]))
    for name in NAMES[:2]:
        code, out = farm.cli(name, "tsd:link", "--codes", codes_file)
        assert code == 0 and "Linked to" in out, out
    # farm-c is not in the file: nothing is linked with another's code.
    code, out = farm.cli("farm-c", "tsd:link", "--codes", codes_file)
    assert code == 1 and "no code for instance 'farm-c'" in out, out
    # Its code from stdin, never on the command line.
    code, out = farm.cli("farm-c", "tsd:link", "--codes", "-", stdin=codes["farm-c"] + "\n")
    assert code == 0 and "Linked to" in out, out
    for name in NAMES:
        code, out = farm.cli(name, "tsd:status", "--json")
        status = json.loads(out.strip().splitlines()[-1])
        assert code == 0 and status["linked"] and status["instance"] == name, out
        assert status["server"] == farm.server.endpoint_prefix and status["farm_file"] == farm.file
        assert codes[name] not in out and "token" not in status
    # The running OctoPrints notice the token and connect.
    for name in NAMES:
        assert wait_for(lambda: farm.api(name, "GET", "/api/plugin/tsd").json()["remote"]["state"]
                        == "connected", 60), name


def test_metrics_for_each_printer(farm):
    promtool = shutil.which("promtool")
    for name in NAMES:
        response = farm.api(name, "GET", "/plugin/tsd/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.text
        assert 'tsd_info{printer="%s",' % name in text
        assert "tsd_linked 1" in text.splitlines()
        assert 'tsd_link_state{state="connected"} 1' in text.splitlines()
        assert farm.server.endpoint_prefix not in text and "localhost" not in text
        if promtool is None:
            pytest.skip("promtool not installed (Debian package prometheus; setup.sh --test)")
        checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                 capture_output=True, timeout=60)
        assert checked.returncode == 0 and not checked.stderr.strip(), checked.stdout + checked.stderr
    # Without an API key, or for a user without the permission: refused.
    anonymous = requests.get(farm.instances["farm-a"].url + "/plugin/tsd/metrics", timeout=10)
    assert anonymous.status_code in (401, 403)
    viewer_key = farm.instances["farm-a"].create_api_key(*VIEWER)
    assert farm.api("farm-a", "GET", "/plugin/tsd/metrics", key=viewer_key).status_code == 403


def test_a_broken_file_is_refused_with_its_line_and_column(farm, browser):
    name = "farm-c"
    before = farm.config_text(name)
    # tsd:apply: refused whole, config.yaml untouched, even with --yes.
    code, out = farm.cli(name, "tsd:apply", farm.broken, "--yes")
    assert code == 1, out
    assert "field 'detection.frame_intervall' (line 7, column 3): unknown field" in out, out
    assert "nothing changed" in out and farm.config_text(name) == before
    # A dry run of a good file that changes something changes nothing.
    changed = os.path.join(farm.work, "changed.yaml")
    with open(farm.file) as f:
        text = f.read().replace("max_tool_temp: 250", "max_tool_temp: 230")
    with open(changed, "w") as f:
        f.write(text)
    code, out = farm.cli(name, "tsd:apply", changed)
    assert code == 0 and "max_tool_temp: 250.0 -> 230.0  (remote.max_tool_temp, line 10 column 18)" in out, out
    assert "Dry run: nothing changed" in out and farm.config_text(name) == before
    # At start: the broken file is refused, every setting stays as it was.
    settings_before = farm.tsd_settings(name)
    farm.restart(name, farm.broken)
    farm.keys[name] = farm.instances[name].create_api_key(*ADMIN)
    assert farm.tsd_settings(name) == settings_before
    status = farm.api(name, "GET", "/api/plugin/tsd").json()
    assert status["farm"]["managed"] == [] and status["farm"]["file"] is None
    assert "(line 7, column 3)" in status["farm"]["error"] and farm.broken in status["farm"]["error"]
    with open(farm.instances[name].octoprint_log) as f:
        assert "the farm file was refused, no setting changed" in f.read()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        from tsd_testing import browser_login

        browser_login(page, farm.instances[name].url, *ADMIN)
        page.click("#navbar_show_settings")
        page.click("#settings_plugin_tsd_link a")
        page.wait_for_selector("#tsd_farm_error", state="visible", timeout=30000)
        assert "(line 7, column 3)" in page.locator("#tsd_farm_error").text_content()
        assert not page.locator("#tsd_farm_managed").is_visible()
        assert page.locator("#tsd_action").is_enabled()
        page.wait_for_selector("#settings_dialog.in", timeout=10000)
        page.wait_for_timeout(600)
        page.screenshot(path=os.path.join(output_dir("screenshots"), "farm_refused_file.png"))
    finally:
        page.close()
