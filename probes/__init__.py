"""lm-probes: behavioural tests of causal language models.

Data flows one way: card (fixtures/cards/*.yaml) -> subject (loaded tokenizer/model)
-> probe (pure function) -> result (frozen dataclass) -> assertion / figure / snapshot.
"""

__version__ = "0.1.0"
