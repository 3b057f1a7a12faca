# SPDX-License-Identifier: AGPL-3.0-or-later
"""The CLI: ``octoprint plugins tsd:link / tsd:unlink / tsd:status / tsd:otp``
(OctoPrint's ``octoprint.cli.commands`` hook). It runs outside the server;
the running OctoPrint notices a changed token file on its own."""

import logging
import os
import time

from . import bridge, discovery_routes
from .discovery import OTP_SECONDS, Discovery
from .link import LinkError
from .linking import REFUSED


def _offline_plugin(cli_group):
    """A plugin instance with what linking needs outside the server (its
    settings and data folder) and no more: OctoPrint injects nothing here."""
    from octoprint.plugin import PluginSettings

    from . import PLUGIN_IDENTIFIER, TsdPlugin

    plugin = TsdPlugin()
    plugin._identifier = PLUGIN_IDENTIFIER
    plugin._logger = logging.getLogger("octoprint.plugins." + PLUGIN_IDENTIFIER)
    plugin._settings = PluginSettings(cli_group.settings, PLUGIN_IDENTIFIER,
                                      defaults=plugin.get_settings_defaults())
    plugin._data_folder = os.path.join(cli_group.settings.getBaseFolder("data"), PLUGIN_IDENTIFIER)
    os.makedirs(plugin._data_folder, exist_ok=True)
    return plugin


def cli_commands(cli_group, pass_octoprint_ctx, *args, **kwargs):
    """octoprint plugins tsd:link / tsd:unlink / tsd:status / tsd:otp"""
    import click

    plugin = _offline_plugin(cli_group)

    @click.command("link")
    @click.option("--code", required=True, help="The 6-digit code from the server's app")
    @click.option("--server", "server_url", default=None, help="Server URL (default: the configured one)")
    def link_command(code, server_url):
        """Link this printer to your account with a code from the app."""
        try:
            result = plugin.link_with_code(code, server_url, reconnect=False)
        except LinkError as exc:
            click.echo("Not linked: {}".format(exc), err=True)
            raise SystemExit(1)
        click.echo("Linked to {} as \"{}\".".format(result["server"], result["name"] or "printer"))

    @click.command("unlink")
    def unlink_command():
        """Forget this printer's link (deletes its token)."""
        error = plugin.unlink()
        if error:
            click.echo("Could not unlink: {}".format(error), err=True)
            raise SystemExit(1)
        click.echo("Unlinked.")

    @click.command("status")
    def status_command():
        """Show whether this printer is linked (never shows the token)."""
        record, error = bridge.load_token(plugin.token_folder())
        if error:
            click.echo("Not linked: {}".format(error))
            raise SystemExit(1)
        if record is None:
            click.echo("Not linked.")
            return
        if plugin._linking.read_link_record().get("refused"):
            # The running OctoPrint heard the server refuse this token.
            click.echo("Not linked: the token for {} as \"{}\" was {}.".format(
                record["server"], record["name"] or "printer", REFUSED))
            raise SystemExit(1)
        click.echo("Linked to {} as \"{}\".".format(record["server"], record["name"] or "printer"))

    @click.command("otp")
    def otp_command():
        """Show a one-time passcode to type into the server's app (10 minutes at most)."""
        if not bridge.native_available():
            click.echo("The native module is not loaded: {}".format(bridge.NATIVE_IMPORT_ERROR), err=True)
            raise SystemExit(1)
        record, _ = bridge.load_token(plugin.token_folder())
        if record is not None:
            click.echo("Already linked to {}.".format(record["server"]), err=True)
            raise SystemExit(1)
        plugin._octoprint_port = cli_group.settings.getInt(["server", "port"]) or 5000
        plugin._plugin_version = ""
        found = {}
        discovery = Discovery(lambda: discovery_routes.config(plugin),
                              lambda code: found.setdefault("result", plugin.link_with_code(code, reconnect=False)),
                              lambda: "result" in found, plugin._logger)
        discovery.start_otp()
        shown = None
        deadline = time.monotonic() + OTP_SECONDS + 5
        while time.monotonic() < deadline and discovery.otp_active() and "result" not in found:
            passcode = discovery.status()["otp"]["passcode"]
            if passcode and passcode != shown:
                shown = passcode
                click.echo("Type this passcode into the server's app within 10 minutes: {}".format(passcode))
            time.sleep(1)
        discovery.stop()
        if "result" in found:
            click.echo("Linked to {} as \"{}\".".format(found["result"]["server"],
                                                      found["result"]["name"] or "printer"))
            return
        click.echo("Not linked: {}".format(discovery.status()["last"] or "the passcode expired"), err=True)
        raise SystemExit(1)

    return [link_command, unlink_command, status_command, otp_command]
