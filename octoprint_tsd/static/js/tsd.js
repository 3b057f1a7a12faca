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
        self.notice = undefined;

        self.applyStatus = function (status) {
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

        self.refresh = function () {
            if (!self.loginState.isUser()) {
                return;
            }
            OctoPrint.simpleApiGet("tsd").done(self.applyStatus);
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
