# SPDX-License-Identifier: AGPL-3.0-or-later
# The two commands of the README, plus benchmarks. Each installs what is
# missing first (Debian packages, .venv with OctoPrint, the plugin).
.PHONY: demo test bench fuzz clean eval train sequences wheels test-wheels soak

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

# Every fuzz target under ASan+UBSan for RUNS executions (default 10 million
# each), merging new inputs into tests/fuzz/corpus/: scripts/fuzz.sh
RUNS ?= 10000000
fuzz:
	./scripts/fuzz.sh -runs=$(RUNS)

# The long fault run (about 85 minutes here): every fault once, 1,000 server
# reconnects, 10,000 camera reconnects, 1,000 helper restarts and a time-scaled
# week of frames against a real OctoPrint, with its figures as bench lines;
# SCALE=0.01 runs a hundredth of each count, PHASES=server,week some phases
# only (faults, server, camera, helper, week). scripts/soak.py; `make test`
# runs each fault once.
SCALE ?= 1
PHASES ?= faults,server,camera,helper,week
soak:
	./scripts/setup.sh --test
	.venv/bin/python scripts/soak.py --scale $(SCALE) --phases $(PHASES)

# The shipped detector from scratch (synthetic data, training, export,
# check); resumable: run it again after an interruption. scripts/train.sh
train:
	./scripts/train.sh

# The synthetic whole prints of bench/bench_sequences.py (about 30 min).
sequences:
	.venv/bin/python tools/synth/generate.py --out build/synth/sequences --sequences --count 80 --frames 16 --variants 6

# The plugin and its self-contained native wheels into dist/, for OctoPrint's
# plugin manager (docs/packaging.md); ARCHES: x86_64 aarch64 armv7l.
ARCHES ?= x86_64 aarch64 armv7l
wheels:
	./scripts/wheels.sh $(ARCHES)

# Those wheels installed by the plugin manager in a fresh chroot per
# architecture without a compiler, then started, linked and updated (root).
test-wheels: wheels
	./scripts/test_wheels.sh $(ARCHES)

clean:
	rm -rf build dist

# The shipped detector end to end on DATA (positives/, negatives/): tools/eval.py
eval:
	.venv/bin/python tools/eval.py $(DATA)
