# SPDX-License-Identifier: AGPL-3.0-or-later
"""`octoprint plugins tsd:otp`: an admin on the printer's shell starts a
one-time passcode; it is printed, the user types it into the app, and the
printer is linked to that user (obico-protocol.md 3.4)."""

import os
import re
import subprocess
import sys

import yaml

from obico_refserver import ReferenceServer, make_pki
from octoprint_instance import offline_config


def test_cli_otp_prints_the_passcode_and_links(tmp_path):
    pki = make_pki(str(tmp_path / "pki"))
    server = ReferenceServer([], pki=pki).start()
    base = tmp_path / "octoprint"
    base.mkdir()
    with open(base / "config.yaml", "w") as handle:
        yaml.safe_dump(offline_config({"tsd": {"server_url": server.endpoint_prefix, "ca_file": pki["ca"]}}),
                       handle)
    # cwd=base: the plugin must come from site-packages, not the checkout.
    process = subprocess.Popen([sys.executable, "-m", "octoprint", "--basedir", str(base), "plugins",
                                "tsd:otp"], cwd=str(base), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        passcode = None
        for line in process.stdout:
            match = re.search(r"within 10 minutes: ([a-z0-9]{5})$", line.strip())
            if match:
                passcode = match.group(1)
                break
        assert passcode
        assert server.claim_otp("cli-owner", passcode)
        rest = process.stdout.read()
        assert process.wait(60) == 0
        assert "Linked to {}".format(server.endpoint_prefix) in rest
        (printer,) = server.printers_of("cli-owner")
        assert os.path.exists(base / "data" / "tsd" / "tsd-token")
        assert printer["auth_token"] not in rest
        # The admin started it; /unlinked/ carried one_time_passcode only then.
        assert all("one_time_passcode" in body for _, body, _ in server.unlinked_posts)
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
