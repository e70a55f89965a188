"""lm-probes: behavioural tests of causal language models.

Data flows one way: card (fixtures/cards/*.yaml) -> source -> subject (loaded tokenizer and
model) -> probe (a pure function) -> result (a frozen dataclass) -> check, snapshot, report.
Each stage is a package (README, "Layout"); the probes themselves are the modules here.
"""

__version__ = "0.1.0"


class SnapshotWarning(UserWarning):
    """A snapshot difference within tolerance of a real one (a near-tie flip): shown, not
    failed. Filter it, or turn it into an error, as ``-W error::lm_probes.SnapshotWarning``.
    (Defined here, not with the snapshots, so that naming it imports nothing.)"""
