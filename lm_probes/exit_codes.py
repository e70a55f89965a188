"""The exit codes of ``lm-probes diff``, ``upgrade-check`` and ``run-with`` (README, docs/snapshots.md)."""

SAME = 0  # no difference beyond tolerance (near-tie warnings allowed)
DIFFERENT = 1  # at least one difference beyond tolerance
COULD_NOT_RUN = 2  # an environment could not be built, or could not record
BAD_INPUT = 4  # missing or unreadable sets, no card in common, a usage error, not a source checkout
