"""lm-probes: behavioural tests of causal language models.

Data flows one way: card (fixtures/cards/*.yaml) -> subject (loaded tokenizer/model)
-> probe (pure function) -> result (frozen dataclass) -> assertion / figure / snapshot.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # SnapshotWarning lives with the snapshots; imported on first use, so that loading
    # the plugin (this package) stays light.
    if name == "SnapshotWarning":
        from .snapshots import SnapshotWarning

        return SnapshotWarning
    raise AttributeError(f"module 'probes' has no attribute {name!r}")
