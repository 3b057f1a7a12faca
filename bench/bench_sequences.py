# SPDX-License-Identifier: AGPL-3.0-or-later
"""Decision-level figures of the shipped detector on whole synthetic prints.

Each sequence of tools/synth (``generate.py --sequences``) is one print seen
by one camera: a part growing frame by frame (one frame per 10 s, the
plugin's default interval) and, in about half of them, failing from a known
frame on. Every frame goes through the plugin's own path (``_tsd.Detector``
-> tsd-helper with the shipped model) and every verdict through
``_tsd.Decider`` (native/core/decide.c) with the default settings, a fresh
decider per print (a new printer: no long-term mean yet). Prints

  false_pauses_per_100_prints   prints paused while still healthy, per 100
                                (a failing print counts when paused before its
                                failure starts)
  seconds_to_pause_p50 / _p90   from the first frame of a failure to the pause
  missed_failures_share         failing prints never paused
  sequences_healthy / sequences_failing

Sequences come from $TSD_SYNTH_SEQUENCES or build/synth/sequences. Without
them the figures are replayed from the detections recorded for the shipped
model when its card was written (bench/data/sequence_detections.jsonl.gz),
and stderr says "replayed": the decision logic runs live either way.
``--record FILE`` writes that file from a live run.
"""

import argparse
import gzip
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

INTERVAL_S = 10.0
RECORDED = os.path.join(REPO, "bench", "data", "sequence_detections.jsonl.gz")


def bench(name, value, unit):
    print("bench {} {:.3f} {}".format(name, value, unit), flush=True)


def live_sequences(folder, config=None):
    """[(meta, [confidences per frame])] scored by the installed helper with
    config (None: the shipped model)."""
    import eval as tsd_eval

    client = tsd_eval.make_client(**({"config": config} if config else {}))
    try:
        out = []
        for name in sorted(os.listdir(os.path.join(folder, "seq"))):
            seq_dir = os.path.join(folder, "seq", name)
            meta_path = os.path.join(seq_dir, "sequence.json")
            if not os.path.exists(meta_path):
                continue  # not finished rendering
            with open(meta_path) as f:
                meta = json.load(f)
            frames = []
            for i in range(len(meta["frame_labels"])):
                with open(os.path.join(seq_dir, "%04d.jpg" % i), "rb") as f:
                    reply = client.detect(f.read())
                frames.append([float(d["confidence"]) for d in reply.get("detections", [])])
            out.append(({"name": name, "onset_frame": meta["onset_frame"], "failure": meta.get("failure"),
                         "family": meta.get("family")}, frames))
        return out
    finally:
        client.close()


def recorded_sequences(path):
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            doc = json.loads(line)
            out.append((doc["meta"], doc["frames"]))
    return out


def decide(frames):
    """Index of the first frame whose verdict is pause, or None."""
    from octoprint_tsd import bridge

    decider = bridge.new_decider(frame_interval_s=INTERVAL_S)
    decider.print_start()
    for i, confidences in enumerate(frames):
        if decider.add_frame(confidences)["verdict"] == "pause":
            return i
    return None


def figures(sequences):
    healthy = failing = false_pauses = missed = 0
    delays = []
    for meta, frames in sequences:
        paused = decide(frames)
        onset = meta["onset_frame"]
        if onset is None:
            healthy += 1
            false_pauses += paused is not None
            continue
        failing += 1
        if paused is None:
            missed += 1
        elif paused < onset:
            false_pauses += 1  # paused the healthy part of a failing print
        else:
            delays.append((paused - onset) * INTERVAL_S)
    return healthy, failing, false_pauses, missed, sorted(delays)


def percentile(values, q):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", default=os.environ.get("TSD_SYNTH_SEQUENCES",
                                                          os.path.join(REPO, "build", "synth", "sequences")))
    ap.add_argument("--record", help="write the live detections to this .jsonl.gz file")
    ap.add_argument("--config", help="another model's helper.yaml, to compare (default: the shipped one)")
    args = ap.parse_args(argv)
    if os.path.isdir(os.path.join(args.sequences, "seq")):
        sequences = live_sequences(args.sequences, args.config)
    elif os.path.exists(RECORDED):
        sequences = recorded_sequences(RECORDED)
        print("bench_sequences: replayed: the detections recorded with the shipped model (no sequences "
              "under %s); the decision logic runs live" % args.sequences, file=sys.stderr)
    else:
        print("bench_sequences: no sequences (%s) and no recorded detections; make them with "
              "tools/synth/generate.py --sequences" % args.sequences, file=sys.stderr)
        return 0
    if args.record:
        with gzip.open(args.record, "wt") as f:
            for meta, frames in sequences:
                f.write(json.dumps({"meta": meta, "frames": [[round(c, 4) for c in fr] for fr in frames]}) + "\n")
    healthy, failing, false_pauses, missed, delays = figures(sequences)
    if healthy + failing == 0:
        print("bench_sequences: no finished sequence under %s" % args.sequences, file=sys.stderr)
        return 0
    bench("false_pauses_per_100_prints", 100.0 * false_pauses / max(1, healthy + failing), "prints")
    bench("seconds_to_pause_p50", percentile(delays, 0.5), "s")
    bench("seconds_to_pause_p90", percentile(delays, 0.9), "s")
    bench("missed_failures_share", missed / max(1, failing), "share")
    bench("sequences_healthy", healthy, "prints")
    bench("sequences_failing", failing, "prints")
    if delays:
        print("bench_sequences: median %.0f s to pause over %d detected failures" % (statistics.median(delays),
                                                                                    len(delays)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
