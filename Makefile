# SPDX-License-Identifier: AGPL-3.0-or-later
# The two commands of the README, plus benchmarks. Each installs what is
# missing first (Debian packages, .venv with OctoPrint, the plugin).
.PHONY: demo test bench clean eval

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

clean:
	rm -rf build

# The shipped detector end to end on DATA (positives/, negatives/): tools/eval.py
eval:
	.venv/bin/python tools/eval.py $(DATA)
