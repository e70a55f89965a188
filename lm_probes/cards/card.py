"""Cards: one YAML file per model, saying what to load, how, and what to expect.

A card is plain data (``fixtures/cards/<name>.yaml``). It is validated when it is read,
so a typo in a field name or a wrong type is reported once, naming the file and the
field, instead of surfacing later as a confusing test failure.

Layout of a card::

    name: smollm2-135m-instruct          # must match the file name
    description: ...
    marks: [gpu]                         # pytest marks every test of this card carries
    tokenizer: {source: ..., ...}        # where the tokenizer comes from (lm_probes/cards/sources.py)
    model:     {source: ..., ...}        # where the weights come from; absent = tokenizer only
    load:      {device: cpu, dtype: float32, quantization: none}
    expect:                              # expected values, keyed by probe then field
      tokenizer: {...}

The format is declared in ``lm_probes/cards/expect_schema.py`` (a pydantic model per section) and
``lm_probes/cards/sources.py`` (a class per ``source:``); fixtures/card.schema.json is generated
from them for editors.

A probe's tests run for a card only if the card has that probe's section under
``expect``: an absent section means "not checked for this model", shown in the report;
an unknown section or field is an error.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lm_probes.cards.schema import CardFile, KnownFailure
from lm_probes.cards.sources import FollowModel, HubSource, MistralCommonTokenizer
from lm_probes.cards.validation import card_json_schema, cross_field_problems, describe_error
from lm_probes.paths import CARDS_DIR, REPO_ROOT, user_path
from lm_probes.registry import PluginLoadError, load_plugins


class CardError(ValueError):
    """A card file is missing, does not parse, or does not match the schema."""


# --------------------------------------------------------------------------- the Card


class Card(CardFile):
    """A validated card, as the suite runs it: every field of the card file (``CardFile``,
    cards/schema.py: sources, load settings and ``expect:`` typed, with the schema's
    defaults), where it was read from, and whether ``--lm-probes-model`` replaced its source. One class,
    so no field is copied from the file into another. ``written_expect`` is ``expect:`` as
    written: what tests walk by dotted path, and what decides which tests run."""

    path: Path
    # set when --lm-probes-model replaced the card's own source (the expectations stay the card's)
    model_override: str | None = None

    @classmethod
    def of(cls, file: CardFile, path: Path) -> Card:
        """The card of a validated card file read from ``path``."""
        return cls.model_validate({**dict(file), "path": path})

    def replace(self, **changes: Any) -> Card:
        """This card with some fields changed, validated as a card is (``expect=`` may be a
        dict as written); how --lm-probes-model, draft-card and the library's tests derive cards."""
        return type(self).model_validate({**dict(self), **changes})

    @property
    def written_expect(self) -> dict[str, Any]:
        """``expect:`` as written (an absent field means "not checked", not its default)."""
        return self.expect.model_dump(by_alias=True, exclude_unset=True)

    @property
    def tolerance_overrides(self) -> dict[str, Any]:
        """The tolerances the card sets (``cross_class`` a dict of its own): what the
        snapshot comparison lays over the sections' defaults."""
        return self.tolerances.model_dump(exclude_none=True)

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def device(self) -> str:
        return self.load.device

    @property
    def dtype(self) -> str:
        return self.load.dtype

    @property
    def quantization(self) -> str:
        return self.load.quantization

    def has_expectation(self, dotted: str) -> bool:
        try:
            self.expected(dotted)
        except KeyError:
            return False
        return True

    def expected(self, dotted: str) -> Any:
        """The expected value at a dotted path such as ``tokenizer.encode[english].ids``.

        ``name[x]`` picks the list item whose ``id`` is x. Raises KeyError if absent.
        """
        node: Any = self.written_expect
        for part in dotted.split("."):
            m = re.fullmatch(r"([\w-]+)(?:\[([^\]]+)\])?", part)
            if not m:
                raise KeyError(dotted)
            key, item_id = m.groups()
            if not isinstance(node, dict) or key not in node:
                raise KeyError(dotted)
            node = node[key]
            if item_id is not None:
                matches = [x for x in node if isinstance(x, dict) and str(x.get("id")) == item_id]
                if not matches:
                    raise KeyError(dotted)
                node = matches[0]
        return node

    def cases(self, dotted: str) -> list[dict[str, Any]]:
        """The list of cases under a path (each with an ``id``), or [] if absent."""
        try:
            value = self.expected(dotted)
        except KeyError:
            return []
        return list(value) if isinstance(value, list) else []

    def with_model(self, model_id: str) -> Card:
        """This card with its tokenizer and weights loaded from ``model_id`` instead.

        The expectations stay: that is the point of ``--lm-probes-model`` (check another build
        of the model against the same card).
        """
        given = Path(model_id)
        if given.suffix == ".gguf" and given.is_file():  # a GGUF file: from_pretrained reads it from its folder
            source = HubSource(source="hf", id=str(given.parent), gguf_file=given.name)
        else:
            source = HubSource(source="hf", id=model_id, gguf_file=_single_gguf(model_id))
        if self.has_model:
            return self.replace(tokenizer=FollowModel(source="model"), model=source, model_override=model_id)
        return self.replace(tokenizer=source, model_override=model_id)

    def xfail_reason(self, test: str, case: str | None) -> str | None:
        """The recorded reason this card fails ``test`` (for ``case``), if any."""
        return _reason(self.xfail, test, case)

    def skip_reason(self, test: str, case: str | None) -> str | None:
        """Why this card does not run ``test`` (for ``case``), if it skips it."""
        return _reason(self.skip, test, case)

    def with_tokenizer_config(self, **overrides: Any) -> Card:
        """This card with some tokenizer_config entries changed (e.g. add_bos_token=False):
        how the library's own tests build a deliberately altered tokenizer."""
        if not isinstance(self.tokenizer, MistralCommonTokenizer):
            raise CardError(f"card '{self.name}': only a mistral-common tokenizer takes tokenizer_config")
        config = {**self.tokenizer.tokenizer_config, **overrides}
        return self.replace(tokenizer=self.tokenizer.model_copy(update={"tokenizer_config": config}))

    def location(self) -> str:
        return f"card '{self.name}' ({_display_path(self.path)})"

    def field_location(self, dotted: str) -> str:
        return f"{self.location()}, field expect.{dotted}"


def _reason(entries: list[KnownFailure], test: str, case: str | None) -> str | None:
    for entry in entries:
        if entry.test == test and entry.case in (None, case):
            return entry.reason
    return None


def looks_like_local_path(source_id: str) -> bool:
    """Whether a model/tokenizer id means a folder on disk rather than a hub id
    ("org/name" or "name"): it exists, is absolute, starts with ".", "~", or has more
    than one "/". One rule for --lm-probes-model and for the load error messages."""
    return (
        source_id.startswith((".", "~"))
        or os.path.isabs(source_id)
        or os.path.exists(os.path.expanduser(source_id))
        or source_id.strip("/").count("/") > 1
    )


def _single_gguf(model_id: str) -> str | None:
    folder = Path(model_id)
    if folder.is_dir():
        ggufs = sorted(p.name for p in folder.glob("*.gguf"))
        if len(ggufs) == 1 and not (folder / "config.json").exists():
            return ggufs[0]
    return None


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# libyaml's safe loader where PyYAML has it: the same documents, ~7x faster than the pure
# Python one (each pytest session reads every card; make test runs ~40 sessions).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _is(path: Path, kind: str) -> bool:
    """``path.is_file()`` / ``is_dir()``, False where the file system refuses the name itself
    (a name over 255 bytes: ENAMETOOLONG, which Path.is_file raises rather than answering)."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False


def load_card(path: str | Path) -> Card:
    """Read and validate one card file (YAML, safe loader)."""
    path = user_path(path)
    shown = _display_path(path)
    if _is(path, "dir"):
        raise CardError(f"card file {shown} is a folder, not a card file: rename or move it")
    if not _is(path, "file"):
        raise CardError(f"card file {shown} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(
            f"card file {shown} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
            "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise CardError(f"card file {shown} cannot be read ({exc.strerror or exc}): check its permissions") from None
    try:
        raw = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise CardError(f"card file {shown} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CardError(f"card file {shown} must be a YAML mapping, got {type(raw).__name__}")

    problems: list[str] = []
    raw = _renamed_keys(raw, shown, problems)
    try:
        load_plugins()  # an installed plugin's sources, sections and engines are names a card may use
    except PluginLoadError as exc:
        raise CardError(f"card file {shown} cannot be read: {exc}") from None
    try:
        spec = CardFile.model_validate(raw)
    except ValidationError as exc:
        problems += [describe_error(error, raw) for error in exc.errors()]
    problems += cross_field_problems(raw, path)
    if problems:
        listing = "\n  - ".join(dict.fromkeys(problems))
        raise CardError(f"card file {shown} is invalid:\n  - {listing}")

    return Card.of(spec, path)


class CardKeyRenamed(FutureWarning):
    """A card uses a key's old name: read as the new one for one more release."""


# old top-level key -> its new name (issue 36: `leave_out:` said both "tests not run" and, under
# snapshot:, "sections not recorded"); read, with a warning, until lm-probes 0.3
RENAMED_KEYS = {"leave_out": "skip"}


def _renamed_keys(raw: dict[str, Any], shown: str, problems: list[str]) -> dict[str, Any]:
    """``raw`` with each old key under its new name, warning once per key; both names at once
    is a problem (which one holds?)."""
    renamed = dict(raw)
    for old, new in RENAMED_KEYS.items():
        if old not in raw:
            continue
        if new in raw:
            problems.append(f"{old}: the old name of `{new}:`, and the card has both; keep `{new}:` alone")
            del renamed[old]  # said once, not again as an unknown field
            continue
        warnings.warn(
            f"card file {shown}: `{old}:` is now `{new}:` (the same entries); rename it, the old name is read "
            "until lm-probes 0.3",
            CardKeyRenamed,
            stacklevel=3,
        )
        renamed[new] = renamed.pop(old)
    return renamed


def nearest(word: str, names: list[str]) -> str | None:
    """The known name closest to a misspelt one, comparing whole names and their
    leading parts ('smolm2' is close to 'smollm2', the start of 'smollm2-135m-instruct')."""
    by_alias: dict[str, str] = {}
    # shortest first: 'smollm2' means the base card, not a variant named after it (-nf4)
    for name in sorted(names, key=len):
        parts = name.split("-")
        for i in range(1, len(parts) + 1):
            by_alias.setdefault("-".join(parts[:i]), name)
    near = difflib.get_close_matches(word, list(by_alias), n=1, cutoff=0.6)
    return by_alias[near[0]] if near else None


def cards_dirs(extra: Sequence[str | Path] = ()) -> tuple[Path, ...]:
    """Where cards are looked up by name: the user's folders (``--lm-probes-cards-dir``, the
    ``lm_probes_cards_dirs`` ini option) in order, then the shipped cards; a folder named
    twice (the option and the ini file) is looked in once."""
    folders = {str(user_path(d).resolve()): user_path(d) for d in extra}
    folders.setdefault(str(CARDS_DIR.resolve()), CARDS_DIR)
    return tuple(folders.values())


def available_cards(extra_dirs: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Card name -> file, over ``cards_dirs(extra_dirs)``. A user's card of a shipped card's
    name is the one used (documented: how a user changes a shipped card); two of the user's own
    folders holding one name is a CardError naming both files, since which one a name meant
    would depend on the order of the folders."""
    known: dict[str, Path] = {}
    for folder in cards_dirs(extra_dirs):
        for path in sorted(folder.glob("*.yaml")):
            first = known.setdefault(path.stem, path)
            if first != path and folder != CARDS_DIR:
                raise CardError(
                    f"two cards named '{path.stem}': {_display_path(first)} and {_display_path(path)}. "
                    "Rename one, or leave its folder out of --lm-probes-cards-dir / lm_probes_cards_dirs"
                )
    return known


def find_card(name_or_path: str, extra_dirs: Sequence[str | Path] = ()) -> Card:
    """A card by name (a ``<name>.yaml`` in a cards folder) or by path to a YAML file."""
    candidate = user_path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or _is(candidate, "file"):
        return load_card(candidate)
    known = available_cards(extra_dirs)
    if name_or_path in known:
        return load_card(known[name_or_path])
    near = nearest(name_or_path, list(known))
    hint = f" Did you mean {near}?" if near else ""
    folders = ", ".join(_display_path(d) for d in cards_dirs(extra_dirs))
    raise CardError(
        f"Unknown card '{name_or_path}'.{hint} Known cards: {', '.join(known)} "
        f"(in {folders}); or pass the path of a card file."
    )


if __name__ == "__main__":  # python -m lm_probes.cards.card > fixtures/card.schema.json
    import json
    import sys

    json.dump(card_json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
