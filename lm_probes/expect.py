"""Comparing what a probe obtained with what a card expects, with messages for people."""

from __future__ import annotations

from typing import Any

from lm_probes.cards.card import Card


class ExpectationMismatch(AssertionError):
    """Obtained differs from the card's expected value; the message names card and field."""


def _normalise(value: Any) -> Any:
    # Probes return tuples; YAML gives lists. Compare them as the same thing.
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _first_difference(expected: Any, obtained: Any) -> str:
    if isinstance(expected, list) and isinstance(obtained, list):
        for i, (e, o) in enumerate(zip(expected, obtained)):
            if e != o:
                return f"\n  first difference at index {i}: expected {e!r}, obtained {o!r}"
        if len(expected) != len(obtained):
            return f"\n  lengths differ: expected {len(expected)}, obtained {len(obtained)}"
    return ""


def _model_source(card: Card) -> str:
    return f"\n  model loaded from --lm-probes-model {card.model_override}" if card.model_override else ""


def mismatch_message(card: Card, field: str, expected: Any, obtained: Any, note: str = "") -> str:
    return (
        f"{card.field_location(field)}{_model_source(card)}\n"
        f"  expected: {expected!r}\n"
        f"  obtained: {obtained!r}"
        f"{_first_difference(expected, obtained)}"
        f"{chr(10) + '  ' + note if note else ''}\n"
        f"If the obtained value is right for this model, update that field in {card.path.name}."
    )


def property_message(card: Card, expected: str, obtained: Any, note: str = "") -> str:
    """The failure of a property every model must have (no card field holds it), in the
    shape of mismatch_message: card and file, expected, obtained, what to do."""
    return (
        f"{card.location()}, a property every model must have{_model_source(card)}\n"
        f"  expected: {expected}\n"
        f"  obtained: {obtained if isinstance(obtained, str) else repr(obtained)}"
        f"{chr(10) + '  ' + note if note else ''}\n"
        f"This is not a card value: if this model is known to fail it, record it under xfail: in "
        f"{card.path.name}, with the reason."
    )


def check_that(
    card: Card, holds: bool, *, expected: str, obtained: Any, field: str | None = None, note: str = ""
) -> None:
    """Assert ``holds``, for a comparison check_equal/at_least/at_most cannot express (a
    substring, a strict inequality, an ordering). With ``field``, the expectation is the
    card's and the message names that field; without, it is a property every model must
    have (greedy is the argmax, beam search uses its beams) and the message says so."""
    __tracebackhide__ = True
    if holds:
        return
    if field is not None:
        raise ExpectationMismatch(mismatch_message(card, field, expected, obtained, note))
    raise ExpectationMismatch(property_message(card, expected, obtained, note))


def check_equal(card: Card, field: str, obtained: Any, note: str = "") -> None:
    """Assert ``obtained`` equals the card's value at ``field`` (KeyError if absent)."""
    __tracebackhide__ = True
    expected = card.expected(field)
    obtained = _normalise(obtained)
    if _normalise(expected) != obtained:
        raise ExpectationMismatch(mismatch_message(card, field, expected, obtained, note))


def check_at_least(card: Card, field: str, obtained: float, note: str = "") -> None:
    """Assert ``obtained`` reaches the card's minimum at ``field`` (KeyError if absent)."""
    __tracebackhide__ = True
    minimum = card.expected(field)
    if not obtained >= minimum:
        raise ExpectationMismatch(mismatch_message(card, field, f">= {minimum}", obtained, note))


def check_at_most(card: Card, field: str, obtained: float, note: str = "") -> None:
    """Assert ``obtained`` stays within the card's maximum at ``field`` (KeyError if absent)."""
    __tracebackhide__ = True
    maximum = card.expected(field)
    if not obtained <= maximum:
        raise ExpectationMismatch(mismatch_message(card, field, f"<= {maximum}", obtained, note))
