/*
 * The Spaghetti Detective: settings view model and start-up checks.
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */
$(function () {
    function TsdSettingsViewModel(parameters) {
        var self = this;
        self.settingsViewModel = parameters[0];
        self.loginState = parameters[1];
        self.settings = undefined;

        self.pluginVersion = ko.observable("");
        self.nativeError = ko.observable("");
        self.nativeSummary = ko.observable("");
        self.helperSummary = ko.observable("");
        self.printerState = ko.observable("");
        self.remoteSummary = ko.observable("");
        self.linked = ko.observable(false);
        self.linkRefused = ko.observable(false);
        self.linkServer = ko.observable("");
        self.linkPrinterName = ko.observable("");
        self.linkCode = ko.observable("");
        self.linking = ko.observable(false);
        self.linkMessage = ko.observable("");
        self.linkFailed = ko.observable(false);
        self.notice = undefined;
        self.webcams = ko.observableArray([]);
        // Discovery and one-time passcode (admin-started, 10 minutes at most).
        self.discoveryActive = ko.observable(false);
        self.otpActive = ko.observable(false);
        self.otpPasscode = ko.observable("");
        // False alarms "looks fine" taught this printer (learned.py).
        self.learnedCount = ko.observable(0);
        self.forgetMessage = ko.observable("");
        // The settings a farm provisioning file manages: read-only here.
        self.farmFile = ko.observable("");
        self.farmManaged = ko.observableArray([]);
        self.farmError = ko.observable("");
        self.remoteCallsText = ko.observable("");
        self.managed = function (key) {
            return self.farmManaged.indexOf(key) >= 0;
        };
        self.managedNote = ko.pureComputed(function () {
            return _.sprintf(gettext("managed by %(file)s"), {file: self.farmFile()});
        });

        self.applyStatus = function (status) {
            var webcams = status.webcams || [];
            self.webcams(webcams);
            if (self.settings && webcams.length && !self.settings.plugins.tsd.webcam()) {
                self.settings.plugins.tsd.webcam(webcams[0].name);
            }
            self.pluginVersion(status.plugin_version || "");
            if (status.native && status.native.loaded) {
                self.nativeError("");
                self.nativeSummary("_tsd " + status.native.version);
            } else {
                var cause = (status.native && status.native.error) || "unknown error";
                self.nativeError(cause);
                self.nativeSummary(gettext("not loaded"));
                self.showNativeNotice(cause);
            }
            var helper = status.helper || {};
            self.helperSummary(helper.available ? helper.version : (gettext("not available") + ": " + (helper.error || "")));
            self.printerState((status.printer && status.printer.state) || gettext("unknown"));
            var link = status.link || {};
            self.linked(!!link.linked);
            self.linkRefused(!!link.refused);
            self.linkServer(link.server || "");
            self.linkPrinterName(link.printer_name || gettext("(unnamed printer)"));
            var discovery = status.discovery || {};
            self.discoveryActive(!!discovery.active);
            self.otpActive(!!(discovery.otp && discovery.otp.active));
            self.otpPasscode((discovery.otp && discovery.otp.passcode) || "");
            self.learnedCount((status.detect && status.detect.learned) || 0);
            var farm = status.farm || {};
            self.farmFile(farm.file || "");
            self.farmManaged(farm.managed || []);
            self.farmError(farm.error || "");
            var calls = farm.settings && farm.settings.remote_calls;
            self.remoteCallsText(calls ? (calls.length ? calls.join(", ") : gettext("none")) : "");
            var remote = status.remote || {};
            var remoteTexts = {
                unlinked: gettext("not linked"),
                connecting: gettext("connecting"),
                connected: gettext("connected"),
                disconnected: gettext("disconnected, retrying"),
                unauthorized: gettext("refused by the server \u2014 link again"),
                replaced: gettext("stopped: another device uses this printer's token"),
                error: gettext("cannot connect")
            };
            var text = remoteTexts[remote.state] || remote.state || "";
            if (remote.detail && remote.state !== "connected") {
                text += " (" + remote.detail + ")";
            }
            self.remoteSummary(text);
        };

        // A native module that failed to load is never silent: a sticky
        // notice names the cause on every page load until it is fixed.
        self.showNativeNotice = function (cause) {
            if (self.notice) {
                return;
            }
            self.notice = new PNotify({
                title: gettext("The Spaghetti Detective is not running"),
                text: _.sprintf(gettext("Its native module could not be loaded: %(cause)s"), {cause: _.escape(cause)}),
                type: "error",
                hide: false
            });
        };

        self.link = function () {
            var serverUrl = self.settings && self.settings.plugins.tsd.server_url();
            self.linking(true);
            self.linkMessage("");
            OctoPrint.simpleApiCommand("tsd", "link", {code: self.linkCode(), server_url: serverUrl})
                .done(function (response) {
                    self.linkFailed(false);
                    self.linkMessage(_.sprintf(gettext("Linked as \"%(name)s\"."),
                                               {name: response.printer_name || gettext("printer")}));
                    self.linkCode("");
                })
                .fail(function (xhr) {
                    var message = (xhr.responseJSON && xhr.responseJSON.message) ||
                        gettext("Linking failed; see octoprint.log.");
                    self.linkFailed(true);
                    self.linkMessage(message);
                })
                .always(function () {
                    self.linking(false);
                    self.refresh();
                });
        };

        self.discoveryCommand = function (command) {
            OctoPrint.simpleApiCommand("tsd", command, {}).always(self.refresh);
            if (command === "otp_start") {
                // The server's passcode arrives with the next polls.
                _.each([3000, 7000, 12000], function (ms) { window.setTimeout(self.refresh, ms); });
            }
        };
        self.discover = function () { self.discoveryCommand("discover"); };
        self.otpStart = function () { self.discoveryCommand("otp_start"); };
        self.otpStop = function () { self.discoveryCommand("otp_stop"); };

        self.forgetLearned = function () {
            OctoPrint.simpleApiCommand("tsd", "forget_learned", {})
                .done(function (response) {
                    self.forgetMessage(_.sprintf(gettext("Forgot %(count)d learned false alarm(s)."),
                                                 {count: response.forgotten}));
                })
                .always(self.refresh);
        };

        self.unlink = function () {
            OctoPrint.simpleApiCommand("tsd", "unlink", {})
                .done(function () {
                    self.linkFailed(false);
                    self.linkMessage(gettext("Unlinked. The printer's token was deleted."));
                })
                .always(self.refresh);
        };

        self.refresh = function () {
            if (!self.loginState.isUser()) {
                return;
            }
            OctoPrint.simpleApiGet("tsd").done(self.applyStatus);
        };

        // The server link stopped for a reason the user must act on.
        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== "tsd" || !data || data.type !== "remote_state") {
                return;
            }
            var texts = {
                unauthorized: gettext("This printer's token was refused by the server \u2014 link again: the printer was unlinked or deleted there. Link it in the plugin's settings."),
                replaced: gettext("Another device connected to the server with this printer's token, so this one stopped. If you copied this OctoPrint's data to another machine, unlink one of them.")
            };
            new PNotify({
                title: gettext("The Spaghetti Detective: server link stopped"),
                text: texts[data.state] || _.escape(data.detail || ""),
                type: "error",
                hide: false
            });
            self.refresh();
        };

        self.onBeforeBinding = function () {
            self.settings = self.settingsViewModel.settings;
        };
        self.onStartupComplete = self.refresh;
        self.onUserLoggedIn = self.refresh;
        self.onSettingsShown = self.refresh;
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: TsdSettingsViewModel,
        dependencies: ["settingsViewModel", "loginStateViewModel"],
        elements: ["#tsd_settings"]
    });
});
