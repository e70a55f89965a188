"""What a draft is made with and into: its settings (prompt format, draws), the draft that
collects the card's entries and notes as they are measured, and the shared constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lm_probes.inputs import QUESTION_FORMAT

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


DEFAULT_PROMPT_FORMAT = QUESTION_FORMAT


DEFAULT_DRAWS = 10  # groups of samples the sampling bounds hold for


# draft-card's --draws at most: every draw after the first is sampled in one batched
# generate() call (draws - 1 times the regime's samples), so memory and time grow with it;
# 100 draws already set bounds that hold for 99 seeds besides the suite's
MAX_DRAWS = 100


NOISE_DRAWS = 200  # random embeddings the embedding bound is set against


NOISE_RATE = 0.01  # ... which may pass all the coherent groups together at most this often


# a share bound set from a measured per-sample probability (D6, D7) fails a later run of the
# same model (another seed, another machine class) at most this often
FALSE_ALARM_RATE = 0.01


UNRELATED = "unrelated"  # the inputs' word group of deliberately unrelated words


@dataclass(frozen=True)
class DraftSettings:
    """What the draft measures beyond the model: how many draws of samples, how knowledge
    questions are asked, and the full-precision card a quantized model is compared with."""

    draws: int = DEFAULT_DRAWS
    prompt_format: str = DEFAULT_PROMPT_FORMAT
    reference: Subject | None = None
    # a model whose stop ids miss its chat template's turn end is drafted (the check as a
    # strict xfail) only when the user names the defect (draft-card's --accept-turn-end-not-a-stop-id)
    accept_turn_end_not_a_stop_id: bool = False


@dataclass
class Draft:
    """The measured ``expect:`` sections, the known failures, and what was not drafted."""

    expect: dict[str, Any] = field(default_factory=dict)
    xfail: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "field: why", for the header

    def fails(self, test: str, reason: str, case: str | None = None) -> None:
        entry = {"test": test, **({"case": case} if case is not None else {}), "reason": reason}
        self.xfail.append(entry)

    def skip(self, what: str, why: str) -> None:
        self.left_out.append(f"{what}: {why}")


def short_text(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 1] + "…")
