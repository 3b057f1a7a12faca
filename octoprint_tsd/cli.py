# SPDX-License-Identifier: AGPL-3.0-or-later
"""The CLI: ``octoprint plugins tsd:link / tsd:unlink / tsd:status / tsd:otp
/ tsd:apply`` (OctoPrint's ``octoprint.cli.commands`` hook). It runs outside
the server; the running OctoPrint notices a changed token file on its own."""

import json
import logging
import os
import time

from . import bridge, discovery_routes, farm
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


def code_for_instance(lines, instance):
    """The linking code for this instance from a codes file: lines of
    "NAME CODE" (NAME: the instance's name, farm.instance_name()) or, for a
    file with a single code, just "CODE"; blank lines and # comments are
    skipped. ValueError says why there is none."""
    named, bare = {}, []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) == 1:
            bare.append(words[0])
        else:
            named[" ".join(words[:-1])] = words[-1]
    if instance is not None and instance in named:
        return named[instance]
    if len(bare) == 1 and not named:
        return bare[0]
    if named and instance is None:
        raise ValueError("the file names instances, and this one has no name "
                         "(set ${} or OctoPrint's appearance name)".format(farm.INSTANCE_ENV))
    raise ValueError("no code for instance {!r} (the file has {} named and {} bare codes)".format(
        instance, len(named), len(bare)))


def cli_commands(cli_group, pass_octoprint_ctx, *args, **kwargs):
    """octoprint plugins tsd:link / tsd:unlink / tsd:status / tsd:otp / tsd:apply"""
    import click

    plugin = _offline_plugin(cli_group)

    def this_instance():
        return farm.instance_name(plugin._settings.global_get)

    @click.command("link")
    @click.option("--code", default=None, help="The 6-digit code from the server's app")
    @click.option("--codes", "codes_file", type=click.File("r"), default=None,
                  help="A file of codes, one per instance (\"NAME CODE\" lines), or - for stdin")
    @click.option("--server", "server_url", default=None, help="Server URL (default: the configured one)")
    def link_command(code, codes_file, server_url):
        """Link this printer to your account with a code from the app."""
        if (code is None) == (codes_file is None):
            click.echo("Give either --code or --codes.", err=True)
            raise SystemExit(2)
        if codes_file is not None:
            try:
                code = code_for_instance(codes_file.read(64 * 1024).splitlines(), this_instance())
            except ValueError as exc:
                click.echo("Not linked: {}".format(exc), err=True)
                raise SystemExit(1)
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
    @click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts")
    def status_command(as_json):
        """Show whether this printer is linked (never shows the token)."""
        record, error = bridge.load_token(plugin.token_folder())
        refused = record is not None and bool(plugin._linking.read_link_record().get("refused"))
        if as_json:
            path, _ = farm.farm_path()
            click.echo(json.dumps({
                "instance": this_instance(),
                "linked": record is not None and not refused,
                "refused": refused,
                "server": record["server"] if record else None,
                "printer_name": record["name"] if record else None,
                "error": error,
                "server_url": plugin._settings.get(["server_url"]),
                "farm_file": path if os.path.exists(path) else None,
            }, sort_keys=True))
            if error or refused:
                raise SystemExit(1)
            return
        if error:
            click.echo("Not linked: {}".format(error))
            raise SystemExit(1)
        if record is None:
            click.echo("Not linked.")
            return
        if refused:
            # The running OctoPrint heard the server refuse this token.
            click.echo("Not linked: the token for {} as \"{}\" was {}.".format(
                record["server"], record["name"] or "printer", REFUSED))
            raise SystemExit(1)
        click.echo("Linked to {} as \"{}\".".format(record["server"], record["name"] or "printer"))

    @click.command("apply")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--yes", is_flag=True, help="Apply the changes (without it: a dry run)")
    @click.option("--instance", default=None,
                  help="This instance's name in the file (default: ${}, else OctoPrint's "
                       "appearance name)".format(farm.INSTANCE_ENV))
    def apply_command(path, yes, instance):
        """Check a farm provisioning file and show (or, with --yes, make) the
        changes it makes to this instance's settings."""
        instance = instance or this_instance()
        try:
            document = farm.load(path, instance)
        except farm.FarmError as exc:
            click.echo("Refused, nothing changed: {}".format(exc), err=True)
            raise SystemExit(1)
        which = "its overrides" if document["instance_known"] else "no overrides, the farm's settings"
        click.echo("{}: instance {!r} ({}); {} printers in the file.".format(
            path, instance, which, len(document["printers"])))
        found = farm.changes(plugin._settings, document["settings"])
        for key, now, then in found:
            click.echo("  {}: {} -> {}  ({})".format(key, json.dumps(now), json.dumps(then),
                                                    document["places"][key]))
        if not found:
            click.echo("Nothing to change.")
            return
        if not yes:
            click.echo("Dry run: nothing changed. Run again with --yes to apply.")
            return
        farm.save(plugin._settings, found)
        click.echo("Applied {} changes. A running OctoPrint takes them at its next start.".format(
            len(found)))

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

    return [link_command, unlink_command, status_command, otp_command, apply_command]
