/*
 * The Spaghetti Detective: the tab in OctoPrint's UI. The newest frame with
 * the detector's boxes (or, after an action, the frame that triggered it,
 * with a "Live" toggle), the state of the detection, the failure gauge of
 * the current print, and Pause / Resume / "Looks fine".
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */
$(function () {
    var TAB_ID = "#tab_plugin_tsd";
    var MAX_POINTS = 2000;           // as the backend's history
    var POLL_MS = 3000;              // frame reload while the tab is visible
    var MIN_FRAME_GAP_MS = 300;      // no faster than this, however many messages
    var PLOT_HEIGHT = 220;
    var SVG_NS = "http://www.w3.org/2000/svg";
    var PRINTING_STATES = ["watching", "warning", "failing", "paused"];

    function TsdTabViewModel(parameters) {
        var self = this;
        self.loginState = parameters[0];
        self.printerState = parameters[1];
        self.access = parameters[2];
        self.settingsViewModel = parameters[3];

        self.detect = ko.observable(null);
        self.nativeLoaded = ko.observable(true);
        self.linked = ko.observable(false);
        self.upload = ko.observable(null);
        self.cloudPrint = ko.observable(null);
        self.actions = ko.observable({});
        self.tabVisible = ko.observable(false);
        self.frameShown = ko.observable(false);
        self.frameMessage = ko.observable(gettext("No frame yet."));
        self.message = ko.observable("");
        self.messageFailed = ko.observable(false);
        self.busy = ko.observable(false);
        // "auto": the triggering frame while paused by TSD, else the live one.
        self.viewMode = ko.observable("auto");

        // ---- state ---------------------------------------------------------------

        self.state = ko.pureComputed(function () {
            var detect = self.detect();
            return detect ? detect.state : "off";
        });

        self.stateText = ko.pureComputed(function () {
            var detect = self.detect();
            if (!detect) {
                return gettext("Off") + ": " + (self.nativeLoaded()
                    ? gettext("detection is not running")
                    : gettext("the native module is not loaded (see the plugin's settings)"));
            }
            var detail = detect.detail || "";
            switch (detect.state) {
                case "watching":
                    return gettext("Watching");
                case "warning":
                    return gettext("Warning: the print may be failing");
                case "failing":
                    return gettext("Failure detected (notify only)");
                case "paused":
                    return gettext("Paused by The Spaghetti Detective");
                case "idle":
                    // Idle with a detail: frames for the view, detection off.
                    return detail ? gettext("Off") + ": " + detail : gettext("Idle: not printing");
                case "disabled":
                    return gettext("Off") + ": " + (detail || gettext("no camera"));
                case "error":
                    return gettext("Problem") + ": " + (detail || gettext("unknown"));
                default:
                    return detect.state + (detail ? ": " + detail : "");
            }
        });

        self.stateCss = ko.pureComputed(function () {
            return "tsd-state-" + self.state();
        });

        // The frame that triggered this print's action, with its numbers.
        self.evidence = ko.pureComputed(function () {
            var detect = self.detect();
            return (detect && detect.evidence) || null;
        });

        self.showingEvidence = ko.pureComputed(function () {
            if (!self.evidence()) {
                return false;
            }
            var mode = self.viewMode();
            return mode === "evidence" || (mode === "auto" && self.state() === "paused");
        });

        self.showLive = function () {
            self.viewMode("live");
        };

        self.showEvidence = function () {
            self.viewMode("evidence");
        };

        self.showingEvidence.subscribe(function () {
            if (self.isShown()) {
                self.loadFrame();
            }
            self.pointsChanged();
        });

        self.evidenceTitle = ko.pureComputed(function () {
            var evidence = self.evidence();
            if (!evidence) {
                return "";
            }
            var what = {
                pause: gettext("The frame that paused the print"),
                pause_heaters_off: gettext("The frame that paused the print"),
                cancel: gettext("The frame that cancelled the print"),
                notify: gettext("The frame that raised the failure alert")
            }[evidence.action] || gettext("The frame that triggered the action");
            var when = evidence.time ? new Date(evidence.time * 1000).toLocaleTimeString() : "";
            return _.sprintf(gettext("%(what)s (frame %(frame)d of the print, %(when)s)"),
                             {what: what, frame: evidence.frame || 0, when: when});
        });

        // Which rule crossed: the fixed line (score / 1.75 above 0.78) or the
        // band rule (between 0.38 and 0.78 and above 3.8 x (short - long mean)).
        self.evidenceReason = ko.pureComputed(function () {
            var e = self.evidence();
            if (!e || typeof e.pause_at !== "number") {
                return "";
            }
            var th = self.thresholds();
            var rule = e.adjusted > th.high * th.factor
                ? _.sprintf(gettext("above the fixed line %(line)s (1.75 x 0.78)"),
                            {line: (th.high * th.factor).toFixed(2)})
                : _.sprintf(gettext("above the moving line %(line)s (1.75 x 3.8 x (short-term mean %(short)s - long-term mean %(long)s) = %(raw)s, kept between %(lo)s and %(hi)s)"),
                            {line: e.pause_at.toFixed(2), short: e.short_mean.toFixed(3),
                             "long": e.long_mean.toFixed(3),
                             raw: (th.factor * 3.8 * (e.short_mean - e.long_mean)).toFixed(2),
                             lo: (th.low * th.factor).toFixed(2), hi: (th.high * th.factor).toFixed(2)});
            return _.sprintf(gettext("%(boxes)d boxes, p %(p)s. Score %(score)s was %(rule)s: failure level (gauge %(gauge)s of 1)."),
                             {boxes: (e.detections || []).length, p: e.p.toFixed(2),
                              score: e.adjusted.toFixed(2), rule: rule,
                              gauge: e.normalized_p.toFixed(2)});
        });

        self.cameraName = ko.pureComputed(function () {
            var detect = self.detect();
            var camera = detect && detect.camera;
            return camera ? (camera.display_name || camera.name || "") : "";
        });

        self.framesText = ko.pureComputed(function () {
            var detect = self.detect();
            if (!detect) {
                return "-";
            }
            return _.sprintf(gettext("%(frames)d (%(ok)d detections, %(errors)d errors)"), {
                frames: detect.frames || 0,
                ok: detect.detections_ok || 0,
                errors: detect.detection_errors || 0
            });
        });

        self.scoreText = ko.pureComputed(function () {
            var detect = self.detect();
            var last = detect && detect.last;
            if (!last || typeof last.adjusted !== "number") {
                return "-";
            }
            return _.sprintf(gettext("%(score)s (p %(p)s, %(boxes)d boxes); warning above %(warn)s, failure above %(pause)s"), {
                score: last.adjusted.toFixed(3),
                p: (last.p || 0).toFixed(3),
                boxes: (last.detections || []).length,
                warn: typeof last.warn_at === "number" ? last.warn_at.toFixed(2) : "?",
                pause: typeof last.pause_at === "number" ? last.pause_at.toFixed(2) : "?"
            });
        });

        self.inferenceText = ko.pureComputed(function () {
            var detect = self.detect();
            var last = detect && detect.last;
            if (!last || typeof last.ms !== "number") {
                return "-";
            }
            return _.sprintf(gettext("%(ms)s ms for the last frame"), {ms: Math.round(last.ms)});
        });

        self.helperText = ko.pureComputed(function () {
            var detect = self.detect();
            var helper = detect && detect.helper;
            if (!helper) {
                return detect && detect.helper_error ? detect.helper_error : gettext("not started");
            }
            var text = _.sprintf(gettext("%(state)s, %(restarts)d restarts"), {
                state: helper.state || "?",
                restarts: Math.max(0, (helper.starts || 0) - 1)
            });
            if (helper.pid) {
                text += ", pid " + helper.pid;
            }
            if (detect.helper_error) {
                text += " - " + detect.helper_error;
            }
            return text;
        });

        // A full disk: what the plugin could not save (it keeps using it and
        // saves it again at the next print's start or end).
        self.saveError = ko.pureComputed(function () {
            var detect = self.detect();
            return (detect && detect.save_error) || "";
        });

        self.actionText = ko.pureComputed(function () {
            var settings = self.settingsViewModel && self.settingsViewModel.settings;
            var tsd = settings && settings.plugins && settings.plugins.tsd;
            var action = tsd && tsd.action ? tsd.action() : undefined;
            var detect = self.detect();
            var text = (action && self.actions()[action]) || action || "-";
            if (detect && typeof detect.bending_factor === "number" && detect.bending_factor < 1) {
                text += " " + _.sprintf(gettext("(sensitivity lowered to %(factor)s by \"Looks fine\")"),
                                        {factor: detect.bending_factor.toFixed(2)});
            }
            return text;
        });

        self.uploadText = ko.pureComputed(function () {
            var upload = self.upload();
            if (!upload) {
                return "-";
            }
            var text = _.sprintf(gettext("%(posted)d posted, %(failed)d failed"), {
                posted: upload.posted || 0, failed: upload.failed || 0
            });
            if (upload.last_error) {
                text += " (" + upload.last_error + ")";
            }
            return text;
        });

        // Print from the app: the download in progress, or how the last one ended.
        self.cloudPrintText = ko.pureComputed(function () {
            var cloud = self.cloudPrint();
            var now = cloud && cloud.downloading;
            if (now) {
                return _.sprintf(gettext("Downloading %(name)s: %(done)s"), {
                    name: now.filename,
                    done: now.percent !== null && now.percent !== undefined
                        ? now.percent + " %" : Math.round(now.bytes / 1048576) + " MB"
                });
            }
            if (cloud && cloud.last) {
                return cloud.last.error
                    ? _.sprintf(gettext("%(name)s not printed: %(error)s"), {name: cloud.last.filename, error: cloud.last.error})
                    : _.sprintf(gettext("%(name)s downloaded and printing"), {name: cloud.last.filename});
            }
            return "-";
        });

        // ---- permissions and buttons -----------------------------------------------

        self.canControl = ko.pureComputed(function () {
            // permissionList: re-evaluated once the permissions are known.
            self.access.permissions.permissionList();
            return !!self.loginState.isUser() &&
                self.loginState.hasPermission(self.access.permissions.PRINT);
        });
        self.canPause = ko.pureComputed(function () {
            return self.canControl() && !!self.printerState.isPrinting() && !self.busy();
        });
        self.canResume = ko.pureComputed(function () {
            return self.canControl() && !!self.printerState.isPaused() && !self.busy();
        });
        self.canLooksFine = ko.pureComputed(function () {
            return self.canControl() && !!self.detect() && !self.busy() &&
                (!!self.printerState.isPrinting() || !!self.printerState.isPaused());
        });

        self.showResult = function (text, failed) {
            self.messageFailed(!!failed);
            self.message(text);
        };

        function failureText(xhr, fallback) {
            return (xhr && xhr.responseJSON && (xhr.responseJSON.error || xhr.responseJSON.message)) ||
                fallback;
        }

        self.pause = function () {
            self.busy(true);
            OctoPrint.job.pause()
                .fail(function (xhr) {
                    self.showResult(failureText(xhr, gettext("Could not pause the print.")), true);
                })
                .always(function () { self.busy(false); });
        };

        self.resume = function () {
            self.busy(true);
            OctoPrint.job.resume()
                .fail(function (xhr) {
                    self.showResult(failureText(xhr, gettext("Could not resume the print.")), true);
                })
                .always(function () { self.busy(false); });
        };

        self.looksFine = function () {
            self.busy(true);
            OctoPrint.simpleApiCommand("tsd", "looks_fine", {})
                .done(function (response) {
                    var factor = response && typeof response.bending_factor === "number"
                        ? response.bending_factor.toFixed(2) : "?";
                    self.showResult(_.sprintf(gettext("Thanks. The detector is less sensitive for the rest of this print (factor %(factor)s)."),
                                              {factor: factor}), false);
                })
                .fail(function (xhr) {
                    self.showResult(failureText(xhr, gettext("Could not mark the print as fine.")), true);
                })
                .always(function () { self.busy(false); });
        };

        // ---- status ----------------------------------------------------------------

        self.applyDetect = function (detect) {
            var previous = self.detect();
            var before = previous && previous.evidence, after = detect && detect.evidence;
            if ((before && before.seq) !== (after && after.seq)) {
                self.viewMode("auto");      // a new action (or a new print): show why
            }
            self.detect(detect || null);
            if (!detect) {
                return;
            }
            var last = detect.last;
            if (last && typeof last.seq === "number") {
                self.rememberResult(last);
            }
            var newFrame = !previous || previous.frames !== detect.frames ||
                ((previous.last && previous.last.seq) !== (last && last.seq));
            if (newFrame && self.isShown()) {
                self.loadFrame();
            }
        };

        self.refresh = function (withHistory) {
            if (!self.loginState.isUser()) {
                return;
            }
            var url = OctoPrint.getSimpleApiUrl("tsd") + (withHistory ? "?history=1" : "");
            OctoPrint.get(url).done(function (status) {
                self.nativeLoaded(!!(status.native && status.native.loaded));
                self.linked(!!(status.link && status.link.linked));
                self.upload(status.upload || null);
                self.cloudPrint(status.cloud_print || null);
                self.actions(status.actions || {});
                if (withHistory) {
                    self.setHistory(status.detect_history || []);
                }
                self.applyDetect(status.detect);
            });
        };

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== "tsd" || !data) {
                return;
            }
            if (data.type === "detect") {
                if (data.point) {
                    self.addPoint(data.point);
                }
                if (data.upload !== undefined) {
                    self.upload(data.upload);
                }
                self.applyDetect(data.detect);
            } else if (data.type === "cloud_print") {
                self.cloudPrint(data.cloud_print || null);
            } else if (data.type === "cloud_print_failed") {
                new PNotify({
                    title: gettext("Print from the app"),
                    text: _.escape(data.filename + ": " + data.error),
                    type: "error"
                });
            } else if (data.type === "alert") {
                new PNotify({
                    title: _.escape(data.title || gettext("The Spaghetti Detective")),
                    text: _.escape(data.text || ""),
                    type: data.kind === "failure" ? "error" : "notice",
                    hide: data.kind !== "failure"
                });
            }
        };

        // ---- the frame and its boxes -------------------------------------------------

        self.results = [];               // the last few results, by frame seq
        self.shownSeq = null;
        self.frameUrl = null;
        self.frameInFlight = false;
        self.framePending = false;
        self.lastFrameFetch = 0;
        self.pollTimer = undefined;

        self.rememberResult = function (last) {
            if (_.any(self.results, function (r) { return r.seq === last.seq; })) {
                return;
            }
            self.results.push({seq: last.seq, w: last.w, h: last.h, detections: last.detections || []});
            if (self.results.length > 8) {
                self.results.shift();
            }
            if (last.seq === self.shownSeq && !self.shownEvidence) {
                self.drawOverlay();
            }
        };

        self.isShown = function () {
            return self.tabVisible() && !document.hidden;
        };

        self.frameEndpoint = function () {
            var base = (OctoPrint.options && OctoPrint.options.baseurl) || "/";
            if (base.charAt(base.length - 1) !== "/") {
                base += "/";
            }
            return base + OctoPrint.getBlueprintUrl("tsd") + "frame.jpg";
        };

        self.loadFrame = function () {
            var evidence = self.showingEvidence() ? self.evidence() : null;
            if (evidence && self.shownEvidence && self.shownSeq === evidence.seq) {
                return;                    // the evidence does not change: no reload
            }
            if (self.frameInFlight) {
                self.framePending = true;
                return;
            }
            var wait = self.lastFrameFetch + MIN_FRAME_GAP_MS - Date.now();
            if (wait > 0) {
                self.framePending = true;
                setTimeout(function () {
                    if (self.framePending && !self.frameInFlight) {
                        self.framePending = false;
                        self.loadFrame();
                    }
                }, wait);
                return;
            }
            self.frameInFlight = true;
            self.framePending = false;
            self.lastFrameFetch = Date.now();
            var seq = null;
            var query = (evidence ? "?evidence=1&" : "?") + "_=" + Date.now();
            fetch(self.frameEndpoint() + query, {credentials: "same-origin", cache: "no-store"})
                .then(function (response) {
                    if (response.status === 404) {
                        throw new Error(gettext("No frame yet."));
                    }
                    if (response.status === 403) {
                        throw new Error(gettext("You may not see the webcam."));
                    }
                    if (!response.ok) {
                        throw new Error(_.sprintf(gettext("Could not load the frame (HTTP %(status)s)."),
                                                  {status: response.status}));
                    }
                    seq = parseInt(response.headers.get("X-Frame-Seq"), 10);
                    return response.blob();
                })
                .then(function (blob) {
                    return self.showFrame(blob, isNaN(seq) ? null : seq, !!evidence);
                })
                .catch(function (error) {
                    if (!self.frameShown()) {
                        self.frameMessage(error.message || String(error));
                    }
                })
                .then(function () {
                    self.frameInFlight = false;
                    if (self.framePending && self.isShown()) {
                        self.loadFrame();
                    }
                });
        };

        self.showFrame = function (blob, seq, isEvidence) {
            return new Promise(function (resolve) {
                var img = document.getElementById("tsd_tab_frame");
                if (!img) {
                    resolve();
                    return;
                }
                var url = URL.createObjectURL(blob);
                img.onload = function () {
                    if (self.frameUrl) {
                        URL.revokeObjectURL(self.frameUrl);
                    }
                    self.frameUrl = url;
                    self.shownSeq = seq;
                    self.shownEvidence = isEvidence;
                    img.setAttribute("data-seq", seq === null ? "" : String(seq));
                    img.setAttribute("data-view", isEvidence ? "evidence" : "live");
                    self.frameShown(true);
                    self.drawOverlay();
                    resolve();
                };
                img.onerror = function () {
                    URL.revokeObjectURL(url);
                    resolve();
                };
                img.src = url;
            });
        };

        self.drawOverlay = function () {
            var img = document.getElementById("tsd_tab_frame");
            var canvas = document.getElementById("tsd_tab_overlay");
            if (!img || !canvas || !img.naturalWidth) {
                return;
            }
            var width = img.naturalWidth, height = img.naturalHeight;
            canvas.width = width;
            canvas.height = height;
            var ctx = canvas.getContext("2d");
            ctx.clearRect(0, 0, width, height);
            var evidence = self.evidence();
            var result = self.shownEvidence && evidence && evidence.seq === self.shownSeq
                ? evidence : _.find(self.results, function (r) { return r.seq === self.shownSeq; });
            canvas.setAttribute("data-boxes", result ? String(result.detections.length) : "0");
            if (!result || !result.w || !result.h) {
                return;
            }
            var sx = width / result.w, sy = height / result.h;
            var line = Math.max(2, Math.round(width / 200));
            var font = Math.max(10, Math.round(width / 32));
            ctx.font = "bold " + font + "px sans-serif";
            ctx.textBaseline = "top";
            _.each(result.detections, function (d) {
                var box = d.box || [];
                if (box.length < 4) {
                    return;
                }
                var x = box[0] * sx, y = box[1] * sy, w = box[2] * sx, h = box[3] * sy;
                var c = Math.max(0, Math.min(1, Number(d.confidence) || 0));
                // Yellow for weak detections, red for strong ones.
                var color = "rgb(255," + Math.round(220 * (1 - c)) + ",0)";
                ctx.lineWidth = line;
                ctx.strokeStyle = color;
                ctx.strokeRect(x, y, w, h);
                var label = Math.round(c * 100) + "%";
                var tw = ctx.measureText(label).width + 6;
                var ly = y - font - 4 >= 0 ? y - font - 4 : y;
                ctx.fillStyle = color;
                ctx.fillRect(x, ly, tw, font + 4);
                ctx.fillStyle = "#000";
                ctx.fillText(label, x + 3, ly + 2);
            });
        };

        self.startPolling = function () {
            if (self.pollTimer === undefined) {
                self.pollTimer = setInterval(function () {
                    if (self.isShown()) {
                        self.loadFrame();
                    }
                }, POLL_MS);
            }
        };

        self.stopPolling = function () {
            if (self.pollTimer !== undefined) {
                clearInterval(self.pollTimer);
                self.pollTimer = undefined;
            }
        };

        // ---- the score plot --------------------------------------------------------------

        self.points = [];
        self.thresholds = function () {
            var detect = self.detect();
            var t = (detect && detect.thresholds) || {};
            return {low: typeof t.low === "number" ? t.low : 0.38,
                    high: typeof t.high === "number" ? t.high : 0.78,
                    factor: typeof t.pause_factor === "number" ? t.pause_factor : 1.75};
        };

        self.setHistory = function (points) {
            self.points = _.filter(points || [], function (p) {
                return p && typeof p.t === "number" && typeof p.np === "number";
            }).slice(-MAX_POINTS);
            self.pointsChanged();
        };

        self.addPoint = function (point) {
            if (typeof point.t !== "number" || typeof point.np !== "number") {
                return;
            }
            var last = self.points.length ? self.points[self.points.length - 1] : null;
            if (last && point.t < last.t) {
                self.points = [];          // a new print
            } else if (last && point.t === last.t) {
                return;                    // the same point again (idle updates)
            }
            self.points.push(point);
            if (self.points.length > MAX_POINTS) {
                self.points.splice(0, self.points.length - MAX_POINTS);
            }
            self.pointsChanged();
        };

        self.plotTimer = undefined;
        self.pointsChanged = function () {
            var svg = document.getElementById("tsd_tab_plot");
            if (svg) {
                svg.setAttribute("data-points", String(self.points.length));
            }
            if (self.plotTimer === undefined) {
                self.plotTimer = setTimeout(function () {
                    self.plotTimer = undefined;
                    self.renderPlot();
                }, 200);
            }
        };

        function svgElement(name, attrs, text) {
            var element = document.createElementNS(SVG_NS, name);
            _.each(attrs, function (value, key) {
                element.setAttribute(key, String(value));
            });
            if (text !== undefined) {
                element.textContent = text;
            }
            return element;
        }

        // The plot is the Obico server's normalized_p gauge: thirds for ok,
        // warning and failure. The score is held against lines that move
        // with the print's short-term mean (see decision_gauge in watch.py);
        // on the gauge they are fixed at 1/3 and 2/3, so a crossing of the
        // 2/3 line is what paused the print.
        self.renderPlot = function () {
            var svg = document.getElementById("tsd_tab_plot");
            if (!svg || !self.tabVisible()) {
                return;
            }
            var width = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 800);
            var height = PLOT_HEIGHT;
            svg.setAttribute("viewBox", "0 0 " + width + " " + height);
            svg.setAttribute("height", String(height));
            while (svg.firstChild) {
                svg.removeChild(svg.firstChild);
            }
            var left = 42, right = 12, top = 10, bottom = 26;
            var plotW = width - left - right, plotH = height - top - bottom;
            var points = self.points;
            var maxT = 60;
            _.each(points, function (p) {
                maxT = Math.max(maxT, p.t);
            });
            var minT = points.length ? Math.min(points[0].t, 0) : 0;
            var x = function (t) { return left + (t - minT) / (maxT - minT || 1) * plotW; };
            var y = function (v) { return top + plotH - Math.max(0, Math.min(1, v)) * plotH; };

            // The three bands, labelled on the right.
            [["ok", 0, gettext("ok")], ["warn", 1, gettext("warning")], ["pause", 2, gettext("failure")]]
                .forEach(function (band) {
                    svg.appendChild(svgElement("rect", {x: left, y: y((band[1] + 1) / 3), width: plotW,
                                                         height: plotH / 3, "class": "tsd-plot-band tsd-plot-band-" + band[0]}));
                    svg.appendChild(svgElement("text", {x: left + plotW - 4, y: y((band[1] + 1) / 3) + 13,
                                                         "text-anchor": "end", "class": "tsd-plot-label tsd-plot-" + band[0]},
                                               band[2]));
                });
            [["warn", 1 / 3], ["pause", 2 / 3]].forEach(function (line) {
                svg.appendChild(svgElement("line", {x1: left, x2: left + plotW, y1: y(line[1]), y2: y(line[1]),
                                                     "class": "tsd-plot-threshold tsd-plot-" + line[0]}));
            });
            svg.appendChild(svgElement("rect", {x: left, y: top, width: plotW, height: plotH,
                                                 "class": "tsd-plot-area"}));
            [0, 1 / 3, 2 / 3, 1].forEach(function (v, i) {
                svg.appendChild(svgElement("text", {x: left - 4, y: y(v) + 4, "text-anchor": "end",
                                                     "class": "tsd-plot-tick"}, ["0", "1/3", "2/3", "1"][i]));
            });
            // X axis: minutes (seconds for short prints).
            var span = maxT - minT;
            var unit = span > 300 ? 60 : 1;
            var step = niceStep(span / unit / 6) * unit;
            for (var t = Math.ceil(minT / step) * step; t <= maxT + 1e-9; t += step) {
                svg.appendChild(svgElement("text", {x: x(t), y: height - 8, "text-anchor": "middle",
                                                     "class": "tsd-plot-tick"},
                                           unit === 60 ? Math.round(t / 60) + " min" : Math.round(t) + " s"));
            }
            if (!points.length) {
                svg.appendChild(svgElement("text", {x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle",
                                                     "class": "tsd-plot-empty"},
                                           gettext("No scores yet: they appear while a print is watched.")));
                return;
            }
            // The grace period at the start of a print: never an action.
            var graceEnd = null;
            _.each(points, function (p) {
                if (p.grace) {
                    graceEnd = p.t;
                }
            });
            if (graceEnd !== null && graceEnd > minT) {
                svg.appendChild(svgElement("rect", {x: x(minT), y: top, width: x(graceEnd) - x(minT), height: plotH,
                                                     "class": "tsd-plot-grace"}));
                svg.appendChild(svgElement("text", {x: x(minT) + 4, y: top + plotH - 4, "class": "tsd-plot-tick"},
                                           gettext("start: no action")));
            }
            var coords = _.map(points, function (p) {
                return x(p.t).toFixed(1) + "," + y(p.np).toFixed(1);
            }).join(" ");
            svg.appendChild(svgElement("polyline", {points: coords, "class": "tsd-plot-line"}));
            // Mark the frames that warned or failed.
            _.each(points, function (p) {
                if (p.verdict === "warn" || p.verdict === "pause") {
                    svg.appendChild(svgElement("circle", {cx: x(p.t), cy: y(p.np), r: 2.5,
                                                           "class": "tsd-plot-" + p.verdict}));
                }
            });
            // The frame that triggered the action.
            var evidence = self.evidence();
            if (evidence && typeof evidence.t === "number" && evidence.t >= minT) {
                var ex = x(evidence.t), ey = y(evidence.normalized_p);
                svg.appendChild(svgElement("line", {x1: ex, x2: ex, y1: top, y2: top + plotH,
                                                     "class": "tsd-plot-action"}));
                svg.appendChild(svgElement("circle", {cx: ex, cy: ey, r: 5, "class": "tsd-plot-action-point"}));
                var label = _.sprintf(gettext("%(action)s: score %(score)s > %(line)s"), {
                    action: evidence.action === "notify" ? gettext("alert")
                        : (evidence.action === "cancel" ? gettext("cancelled") : gettext("paused")),
                    score: evidence.adjusted.toFixed(2), line: evidence.pause_at.toFixed(2)});
                var anchorEnd = ex > left + plotW * 0.6;
                svg.appendChild(svgElement("text", {x: anchorEnd ? ex - 8 : ex + 8, y: Math.max(top + 12, ey - 8),
                                                     "text-anchor": anchorEnd ? "end" : "start",
                                                     "class": "tsd-plot-label tsd-plot-action-label"}, label));
            }
        };

        function niceStep(raw) {
            var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
            for (var i = 0; i < steps.length; i++) {
                if (steps[i] >= raw) {
                    return steps[i];
                }
            }
            return Math.ceil(raw / 600) * 600;
        }

        // ---- OctoPrint callbacks ------------------------------------------------------------

        self.onTabChange = function (current) {
            self.tabVisible(current === TAB_ID);
        };

        self.onAfterTabChange = function (current) {
            self.tabVisible(current === TAB_ID);
            if (self.tabVisible()) {
                self.opened();
            }
        };

        self.opened = function () {
            self.refresh(true);
            self.loadFrame();
            self.renderPlot();
        };

        self.onStartupComplete = function () {
            $("#tab_plugin_tsd_link > a").attr("title", gettext("The Spaghetti Detective"));
            var selected = OctoPrint.coreui && OctoPrint.coreui.selectedTab;
            self.tabVisible(selected === TAB_ID || $(TAB_ID).hasClass("active"));
            self.startPolling();
            if (self.tabVisible()) {
                self.opened();
            } else {
                self.refresh(true);
            }
            document.addEventListener("visibilitychange", function () {
                if (self.isShown()) {
                    self.loadFrame();
                }
            });
            $(window).on("resize", _.debounce(self.renderPlot, 250));
        };

        self.onUserLoggedIn = function () {
            self.refresh(true);
        };

        self.onUserLoggedOut = function () {
            self.detect(null);
            self.setHistory([]);
        };
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: TsdTabViewModel,
        dependencies: ["loginStateViewModel", "printerStateViewModel", "accessViewModel", "settingsViewModel"],
        elements: ["#tab_plugin_tsd"]
    });
});
