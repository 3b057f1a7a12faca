# SPDX-License-Identifier: AGPL-3.0-or-later
"""OctoPrint's own backup plugin and the printer's token (docs/security.md):
a backup made through OctoPrint's API holds no token file, and the backup
restored into a fresh OctoPrint comes up unlinked and says why."""

import os
import subprocess
import sys
import zipfile

import pytest
import requests

from octoprint_instance import OctoPrintInstance
from tsd_testing import ADMIN, octoprint_and_refserver, wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with octoprint_and_refserver(tmp_path_factory, "backup") as env:
        yield env


def status(instance, api_key):
    return requests.get(instance.url + "/api/plugin/tsd", headers={"X-Api-Key": api_key}, timeout=10).json()


def test_sec02_backup_excludes_token(setup, tmp_path):
    instance, server, api_key = setup
    admin = {"X-Api-Key": api_key}
    code = server.issue_code(user="backup-owner", printer_name="Backed-up Prusa")
    response = requests.post(instance.url + "/api/plugin/tsd", headers=admin,
                             json={"command": "link", "code": code}, timeout=60)
    assert response.status_code == 200, response.text
    (printer,) = server.printers_of("backup-owner")
    token = printer["auth_token"]
    assert wait_for(lambda: server.live(token) == 1, 60)
    data_folder = os.path.join(instance.basedir, "data", "tsd")
    assert os.path.exists(os.path.join(data_folder, "tsd-token"))

    # A backup through OctoPrint's backup plugin, as the UI makes it.
    response = requests.post(instance.url + "/plugin/backup/backup", headers=admin, json={"exclude": []},
                             timeout=30)
    assert response.status_code == 201, response.text
    backup = os.path.join(instance.basedir, "data", "backup", response.json()["name"])
    assert wait_for(lambda: os.path.exists(backup), 120)
    with zipfile.ZipFile(backup) as archive:
        names = archive.namelist()
        contents = b"".join(archive.read(name) for name in names)
    # The plugin's data folder is in the backup (so leaving out the token means something) ...
    assert any(name.startswith("basedir/data/tsd/") for name in names), names
    # ... but not the token file, nor the token anywhere else.
    assert not [name for name in names if "tsd-token" in name]
    assert token.encode() not in contents

    # Restored into a fresh OctoPrint, the printer is unlinked and says so.
    restored = OctoPrintInstance(str(tmp_path / "restored"), python=sys.executable)
    os.makedirs(restored.basedir)
    done = subprocess.run([sys.executable, "-m", "octoprint", "--basedir", restored.basedir, "plugins",
                           "backup:restore", backup], cwd=restored.basedir, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300, check=False)
    assert done.returncode == 0, done.stdout.decode("utf-8", "replace")
    assert not os.path.exists(os.path.join(restored.basedir, "data", "tsd", "tsd-token"))
    restored.start()
    try:
        restored_key = restored.create_api_key(*ADMIN)
        assert wait_for(lambda: status(restored, restored_key)["remote"]["detail"], 60)
        body = status(restored, restored_key)
        assert body["link"]["linked"] is False
        assert body["remote"]["state"] == "unlinked"
        assert "backup" in body["remote"]["detail"] and "link" in body["remote"]["detail"].lower()
        # The original printer's link is untouched: one websocket, the original's.
        assert server.live(token) == 1
    finally:
        restored.stop()
