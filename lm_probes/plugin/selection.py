"""Which cards a session runs, and the tests they turn into: card selection (--lm-probes-card,
--lm-probes-cards-dir, --lm-probes-model), the parametrization of the subject fixtures over the cards, and the
marks a card adds (strict xfails, skips, the GPU cards' skip without CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lm_probes.cards.card import Card, CardError, available_cards, find_card, looks_like_local_path
from lm_probes.cards.validation import unknown_expect_path
from lm_probes.plugin.items import SUBJECT_FIXTURES, card_of, case_id, uses_lm_probes
from lm_probes.plugin.options import options_of
from lm_probes.plugin.session import record_of


def selected_cards(config: pytest.Config) -> list[Card]:
    """The session's cards, read and validated the first time something needs them."""
    record = record_of(config)
    if record.cards is None:
        record.cards = select_cards(config)
    return record.cards


def user_cards_dirs(config: pytest.Config) -> list[Path]:
    """The user's card folders: --lm-probes-cards-dir, then the ini option; each must exist."""
    folders = list(options_of(config).cards_dirs)
    for folder in folders:
        if not folder.is_dir():
            raise pytest.UsageError(
                f"cards folder {folder}: no such folder. Give a folder holding <name>.yaml card files."
            )
    return folders


def select_cards(config: pytest.Config) -> list[Card]:
    folders = user_cards_dirs(config)
    try:
        names = list(options_of(config).cards) or list(available_cards(folders))
        cards = _once_each([find_card(name, folders) for name in names])
    except CardError as exc:
        raise pytest.UsageError(str(exc)) from None
    model = options_of(config).model
    if model:
        if len(cards) != 1:
            raise pytest.UsageError(
                f"--lm-probes-model {model}: replaces the model of exactly one card, but {len(cards)} are selected "
                f"({', '.join(c.name for c in cards)}). Add --lm-probes-card NAME."
            )
        looks_local = looks_like_local_path(model)
        if looks_local:
            _check_local_model(model)
        cards = [cards[0].with_model(str(Path(model).expanduser()) if looks_local else model)]
    return cards


def _once_each(cards: list[Card]) -> list[Card]:
    """The selected cards, a card selected twice (by name, or by a path to the same file) once;
    two files of one card name are refused, as the tests of both would share one id."""
    by_name: dict[str, Card] = {}
    for card in cards:
        first = by_name.setdefault(card.name, card)
        if first.path.resolve() != card.path.resolve():
            raise CardError(
                f"two cards named '{card.name}' are selected: {first.path} and {card.path}. Select one of them."
            )
    return list(by_name.values())


def _check_local_model(model: str) -> None:
    """--lm-probes-model as a path: a folder, or a .gguf file (read from its folder, Card.with_model)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return
    if not path.exists():
        raise pytest.UsageError(
            f"--lm-probes-model {model}: no such folder. Give a folder holding a model or tokenizer, a .gguf "
            "file, or a hub id."
        )
    if path.suffix != ".gguf":
        raise pytest.UsageError(
            f"--lm-probes-model {model}: is a file, not a folder. Give the folder holding the model (or a .gguf file)."
        )
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise pytest.UsageError(f"--lm-probes-model {model}: cannot be read ({exc.strerror or exc}).") from None
    if magic != b"GGUF":
        raise pytest.UsageError(
            f"--lm-probes-model {model}: is not a GGUF file (it does not start with 'GGUF'). Give a .gguf file "
            "or a model folder."
        )


def parametrize(metafunc: pytest.Metafunc) -> None:
    """``lm_probes_subject``/``lm_probes_model_subject``/``lm_probes_loaded_subject`` over the
    selected cards that have the test's ``expects`` field (and ``case`` over that field's items)."""
    fixture = next((f for f in SUBJECT_FIXTURES if f in metafunc.fixturenames), None)
    if fixture is None:
        return
    marker = metafunc.definition.get_closest_marker("observation")
    expects = marker.kwargs.get("expects") if marker else None
    # expects: one card field, or a tuple of fields of which a card needs any one
    alternatives = (expects,) if isinstance(expects, str) else tuple(expects or ())
    for path in alternatives:
        problem = unknown_expect_path(path)
        if problem:  # the test's mistake, not the cards': fail its collection
            raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: @observation(expects=...): {problem}")
    needs_model = fixture == "lm_probes_model_subject"
    cards = [
        c
        for c in selected_cards(metafunc.config)
        if (c.has_model or not needs_model) and (not alternatives or any(c.has_expectation(p) for p in alternatives))
    ]
    if "case" in metafunc.fixturenames:
        if len(alternatives) != 1:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: a test with `case` needs @observation(expects=...) naming one list"
            )
        params = [
            pytest.param(card.name, case, id=f"{card.name}-{case_id(case)}", marks=card_marks(card))
            for card in cards
            for case in card.cases(alternatives[0])
        ]
        metafunc.parametrize((fixture, "case"), params or [not_covered(expects, needs_model, None)], indirect=[fixture])
    else:
        params = [pytest.param(card.name, id=card.name, marks=card_marks(card)) for card in cards]
        metafunc.parametrize(fixture, params or [not_covered(expects, needs_model)], indirect=True)


def not_covered(expects: str | None, needs_model: bool, *extra: Any) -> Any:
    """One skipped item saying why no selected card runs this test."""
    fields = (expects,) if isinstance(expects, str) else tuple(expects or ())
    wanted = " or ".join(f"`expect.{f}`" for f in fields) if fields else "a model"
    if expects and needs_model:
        wanted += " and a model"
    reason = f"no selected card has {wanted}; add it to a card (fixtures/cards/) to run this check"
    return pytest.param(None, *extra, id="no-card", marks=pytest.mark.skip(reason=reason))


def card_marks(card: Card) -> list[pytest.MarkDecorator]:
    return [getattr(pytest.mark, mark) for mark in card.marks]


def mark_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cards' known failures (strict xfails) and left-out tests (skips), and the GPU
    cards' tests skipped where there is no CUDA."""
    if not any(uses_lm_probes(item) for item in items):
        return  # no test of ours: nothing to mark, no card to read
    cards = {c.name: c for c in selected_cards(config)}
    for item in items:
        card = cards.get(card_of(item) or "")
        if card is None:
            continue
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        test, case_name = getattr(item, "originalname", item.name), case_id(case) if case is not None else None
        reason = card.xfail_reason(test, case_name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"{card.name}: {reason}", strict=True))
        left_out = card.skip_reason(test, case_name)
        if left_out:
            item.add_marker(pytest.mark.skip(reason=f"{card.name} leaves this out: {left_out}"))
    # our GPU cards' items only: a host project's own `gpu` tests are not ours to skip
    gpu_items = [item for item in items if item.get_closest_marker("gpu") and card_of(item) in cards]
    if not gpu_items:
        return
    device = options_of(config).device
    if device and not device.startswith("cuda"):
        return  # `pytest -m gpu --lm-probes-device cpu`: a GPU card's checks run on the CPU (slowly)
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(
            reason="requires CUDA; none found (torch.cuda.is_available() is False). "
            "`--lm-probes-device cpu` runs a GPU card on the CPU instead"
        )
        for item in gpu_items:
            item.add_marker(skip)
