# The two set-up commands of the README. Each installs what it needs, then runs.
.PHONY: demo test setup bench

demo:
	bash scripts/setup.sh
	.venv/bin/ktmu demo

test:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest

bench:
	bash scripts/setup.sh
	.venv/bin/ktmu bench --out runs/bench
