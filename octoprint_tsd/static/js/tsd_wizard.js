/*
 * The Spaghetti Detective: the first-run wizard (link with a code, or start
 * discovery / a one-time passcode).
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */
$(function () {
    var DEFAULT_SERVER = "https://app.obico.io";

    function TsdWizardViewModel(parameters) {
        var self = this;
        self.loginState = parameters[0];
        self.defaultServer = ko.observable(DEFAULT_SERVER);
        self.serverChoice = ko.observable("cloud");
        self.customServer = ko.observable("");
        self.code = ko.observable("");
        self.linking = ko.observable(false);
        self.linked = ko.observable(false);
        self.message = ko.observable("");
        self.failed = ko.observable(false);
        self.otpPasscode = ko.observable("");
        self.otpTimer = undefined;

        // One message per error kind from link.py (LinkError.kind).
        var MESSAGES = {
            bad_code: gettext("The code has 6 digits: copy it from the server's app."),
            wrong_code: gettext("This code is wrong or has expired: get a new one in the app."),
            throttled: gettext("Too many attempts: wait a few minutes and try again."),
            unreachable: gettext("The server could not be reached: check the address and this printer's network."),
            tls: gettext("The server's certificate was not accepted."),
            insecure_url: gettext("The server address must start with https:// (http:// only for a local server you allowed in the settings)."),
            bad_url: gettext("The server address must look like https://app.obico.io"),
            server_error: gettext("The server answered with an error: try again later."),
            storage: gettext("The printer's token could not be stored: see octoprint.log.")
        };

        self.serverUrl = function () {
            return self.serverChoice() === "self" ? self.customServer().trim() : DEFAULT_SERVER;
        };

        self.link = function () {
            self.linking(true);
            self.message("");
            OctoPrint.simpleApiCommand("tsd", "link", {code: self.code(), server_url: self.serverUrl()})
                .done(function (response) {
                    self.failed(false);
                    self.linked(true);
                    self.message(_.sprintf(gettext("Linked as \"%(name)s\". You can finish the wizard."),
                                           {name: response.printer_name || gettext("printer")}));
                    self.code("");
                })
                .fail(function (xhr) {
                    var body = xhr.responseJSON || {};
                    self.failed(true);
                    self.message(MESSAGES[body.error] || body.message || gettext("Linking failed; see octoprint.log."));
                })
                .always(function () {
                    self.linking(false);
                });
        };

        self.discover = function () {
            OctoPrint.simpleApiCommand("tsd", "discover", {}).done(function () {
                self.failed(false);
                self.message(gettext("This printer can be found by the server's app on your local network for the next 10 minutes."));
            });
        };

        self.pollOtp = function () {
            OctoPrint.simpleApiGet("tsd").done(function (status) {
                var otp = (status.discovery && status.discovery.otp) || {};
                self.otpPasscode(otp.passcode || "");
                if (status.link && status.link.linked) {
                    self.linked(true);
                    self.failed(false);
                    self.message(gettext("Linked. You can finish the wizard."));
                }
                if (!otp.active || (status.link && status.link.linked)) {
                    window.clearInterval(self.otpTimer);
                    self.otpTimer = undefined;
                }
            });
        };

        self.otpStart = function () {
            OctoPrint.simpleApiCommand("tsd", "otp_start", {}).done(function () {
                if (!self.otpTimer) {
                    self.otpTimer = window.setInterval(self.pollOtp, 2000);
                }
            });
        };

        self.onWizardFinish = function () {
            if (self.otpTimer) {
                window.clearInterval(self.otpTimer);
            }
        };
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: TsdWizardViewModel,
        dependencies: ["loginStateViewModel"],
        elements: ["#tsd_wizard"]
    });
});
