# The set-up commands of the README. Each installs what it needs, then runs.
.PHONY: demo test fuzz setup bench

demo:
	bash scripts/setup.sh
	.venv/bin/ktmu demo

# The whole suite, deterministic: Hypothesis draws the same examples every run (profile "ci", tests/conftest.py).
test:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest

# A hunt for new bugs: the property tests with fresh random examples, many more of them (profile "explore").
fuzz:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-profile=explore

bench:
	bash scripts/setup.sh
	.venv/bin/ktmu bench --out runs/bench
