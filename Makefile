# The two commands of the README. Both set up .venv first (a no-op when current).
.PHONY: setup report test benchmark parity install-check variants fuzz behaviour-changelog clean

PYTEST := .venv/bin/python -m pytest
# Two worker processes (pytest-xdist), one torch thread each. The plugin sends every
# test of one card to the same worker, so each model still loads once and each probe
# result is computed once. WORKERS=0 runs in one process, as a plain `pytest` does.
WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS))

setup:
	@bash scripts/setup.sh

# The main job: the behavioural suite on the embedded CPU models -> reports/report.html
report: setup
	$(PYTEST) $(PARALLEL) tests/behaviour

# Everything: the library's own tests and the behavioural suite; the 15 slowest items
# are listed at the end, so a CI log shows where the time went.
test: setup
	$(PYTEST) $(PARALLEL) --durations=15

# Timing benchmarks (not part of report/test): JSON for --benchmark-compare, and a report.
benchmark: setup
	$(PYTEST) -m "benchmark and not served" tests/benchmarks --benchmark-autosave \
		--benchmark-json=reports/benchmarks.json --html=reports/benchmarks.html

# The same card served by vLLM's CPU build against transformers (docs/served.md): the
# engine's environment is built once (~100 s, 3.4 GB), the server started and stopped here.
parity: setup
	$(PYTEST) -m served --lm-probes-serve --lm-probes-card smollm2-135m-instruct tests/behaviour/test_parity.py tests/served \
		tests/benchmarks/test_served_benchmarks.py --benchmark-json=reports/parity-benchmarks.json --html=reports/parity.html \
		--durations=10

# The install users do (docs/options.md, "In another project"): a wheel built from this
# checkout, installed non-editable into a fresh virtualenv (torch pinned first, then the wheel
# with -c constraints.txt), runs `pytest --pyargs lm_probes.suite --lm-probes-card mistral-tokenizer` and
# `lm-probes --help` from an unrelated folder. About a minute; 1.6 GB in the temporary folder,
# removed after. Not part of make test (marker install).
install-check: setup
	$(PYTEST) -m install tests/install -p no:cacheprovider --html=reports/install.html --durations=5

# Checkpoints as users ship them (issue 45): every harmless variant of SmolLM2's and tiny-mistral's
# model folders (cache off, sharded weights, the template in tokenizer_config.json, no
# generation_config.json, no pad token) passes its whole card, and every harmful twin fails it.
# make test runs the cheapest pairs; .ci/run runs this.
variants: setup
	$(PYTEST) $(PARALLEL) -m variants tests/unit/cards/test_checkpoint_variants.py --html=reports/variants.html --durations=10

# The deep fuzz profile (make test runs the same test with a bounded number of examples). The profiles
# are registered by tests/unit/fuzz_strategies.py, loaded as a plugin: Hypothesis reads the option first.
fuzz: setup
	$(PYTEST) tests/unit/test_fuzz.py -p tests.unit.fuzz_strategies --hypothesis-profile=deep \
		--html=reports/fuzz.html --hypothesis-show-statistics

# The published behaviour changelog (docs/behaviour-changelog.md, docs/snapshots.md): every
# transformers minor release from 4.46 (its newest patch) and every patch from 5.20, on the
# default cards. Only releases not yet in docs/behaviour-changelog/ are recorded (about 50 s
# each, two at a time on 2 cores); exit 1 from lm-probes changelog means "some section changed".
CHANGELOG_PAGES := --output docs/behaviour-changelog --markdown docs/behaviour-changelog.md \
	--html reports/behaviour-changelog.html
behaviour-changelog: setup
	.venv/bin/lm-probes changelog --package transformers --from 4.46.0 --every minor $(CHANGELOG_PAGES) || test $$? -eq 1
	.venv/bin/lm-probes changelog --package transformers --from 5.20.0 --every patch $(CHANGELOG_PAGES) || test $$? -eq 1

clean:
	rm -rf reports/*.html .pytest_cache
