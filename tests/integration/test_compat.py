# SPDX-License-Identifier: AGPL-3.0-or-later
"""The plugin in the oldest OctoPrint line we support (1.10), from PyPI.

scripts/test.sh builds a second virtualenv with OctoPrint 1.10 and this
plugin's wheel and names its interpreter in TSD_COMPAT_PYTHON. The main suite
covers the newest 1.11 in detail; this one checks that the plugin loads, its
native module imports and its status API answers there too.
"""

import os
import subprocess

import pytest
import requests

import octoprint_tsd._tsd as native
from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, wait_for


@pytest.fixture(scope="module")
def compat_server(tmp_path_factory):
    python = os.environ.get("TSD_COMPAT_PYTHON")
    if not python:
        pytest.skip("TSD_COMPAT_PYTHON is not set: the OctoPrint 1.10 check was skipped "
                    "(make test sets it)")
    instance = OctoPrintInstance(str(tmp_path_factory.mktemp("octoprint-compat")), python=python)
    instance.prepare(users=[ADMIN + (True,)])
    instance.start()
    try:
        yield instance, instance.create_api_key(*ADMIN)
    finally:
        instance.stop()


def test_runs_octoprint_1_10(compat_server):
    instance, _ = compat_server
    version = subprocess.run(
        [instance.python, "-c", "import octoprint; print(octoprint.__version__)"],
        stdout=subprocess.PIPE, check=True, cwd="/",
    ).stdout.decode().strip()
    assert version.startswith("1.10."), version


def test_plugin_loads_with_native_module(compat_server):
    instance, api_key = compat_server
    headers = {"X-Api-Key": api_key}
    status = requests.get(instance.url + "/api/plugin/tsd", headers=headers, timeout=10)
    assert status.status_code == 200
    body = status.json()
    assert body["native"]["loaded"] is True
    assert body["native"]["version"] == native.__version__
    assert wait_for(
        lambda: requests.get(instance.url + "/api/plugin/tsd", headers=headers, timeout=10)
        .json()["helper"].get("available"),
        timeout=30,
    )
    with open(instance.octoprint_log, encoding="utf-8") as f:
        assert "[bridge] native module loaded" in f.read()
    page = instance.login(*ADMIN).get(instance.url + "/", timeout=30)
    assert 'id="tsd_settings"' in page.text
