"""The break table's machinery (tests/unit/test_break_table.py): running a named behavioural
test on a subject, and the subjects a break starts from."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lm_probes.cards.card import find_card
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.check import SnapshotCheck
from lm_probes.subjects.subject import Subject

# ------------------------------------------------------------------ running a test


class _NoAttachments:
    """The report attachments of a behavioural test, dropped."""

    def html(self, *args, **kwargs) -> None: ...
    def table(self, *args, **kwargs) -> None: ...
    def texts(self, *args, **kwargs) -> None: ...
    def text(self, *args, **kwargs) -> None: ...
    def png(self, *args, **kwargs) -> None: ...


@dataclass(frozen=True)
class Check:
    """One behavioural test item: ``"test_decoding.py::test_name[param]"``."""

    test: str
    params: dict = field(default_factory=dict)
    # what the failure message must and must not say (a catch for the wrong reason, or
    # with advice that points the wrong way, is no catch)
    says: tuple[str, ...] = ()
    not_says: tuple[str, ...] = ()
    # for a harmless change: snapshot sections whose errors it may cause (and why, below)
    tolerates: tuple[str, ...] = ()

    def only_tolerated(self, message: str) -> bool:
        """Whether every error in a snapshot failure is in a section this check tolerates."""
        errors = re.findall(r"\[error\] (\S+?):", message)
        return bool(errors) and all(e.startswith(self.tolerates) for e in errors)

    def __str__(self) -> str:
        shown = ",".join(str(v["id"] if isinstance(v, dict) else v) for v in self.params.values())
        return self.test + (f"[{shown}]" if shown else "")

    def run(self, subject: Subject) -> tuple[str, str]:
        """('passed' | 'failed' | 'skipped', message) of the real test function on ``subject``."""
        module_name, function_name = self.test.split("::")
        module = importlib.import_module(f"tests.behaviour.{module_name.removesuffix('.py')}")
        function = getattr(module, function_name)
        kwargs = {}
        for name in inspect.signature(function).parameters:
            if name in ("lm_probes_subject", "lm_probes_model_subject", "lm_probes_loaded_subject"):
                kwargs[name] = subject
            elif name == "lm_probes_attach":
                kwargs[name] = _NoAttachments()
            elif name == "lm_probes_snapshot":
                kwargs[name] = SnapshotCheck(SNAPSHOT_DIR)
            else:
                kwargs[name] = self.params[name]
        try:
            with warnings.catch_warnings():  # a broken subject's snapshot warnings are expected here
                warnings.simplefilter("ignore")
                function(**kwargs)
        except (AssertionError, pytest.fail.Exception) as exc:
            return "failed", str(exc)
        except pytest.skip.Exception as exc:
            return "skipped", str(exc)
        return "passed", ""


def bos(value: bool) -> dict:
    return {"bos": value}


def case(card: str, path: str, case_id: str) -> dict:
    return {"case": find_card(card).expected(f"{path}[{case_id}]")}


# ------------------------------------------------------------------------ subjects


def saved_model_folder(subject: Subject, folder: Path, generation_config: dict) -> Path:
    """The subject's model and tokenizer saved as a model folder whose
    generation_config.json gained ``generation_config``: a release of the model that
    changed only that file."""
    subject.model.save_pretrained(folder)
    subject.tokenizer.save_pretrained(folder)
    path = folder / "generation_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | generation_config))
    return folder


def smollm2_folder(
    folder: Path,
    generation_config: dict | None = None,
    chat_template: Callable[[str], str] | None = None,
    tokenizer_json: Callable[[dict], dict] | None = None,
) -> Path:
    """The SmolLM2 model folder (the cached conversion, files linked, not copied) with
    an edited generation_config.json, chat_template.jinja and/or tokenizer.json."""
    source = Path(Subject(find_card("smollm2-135m-instruct")).model_folder())
    folder.mkdir()
    for item in source.iterdir():
        (folder / item.name).symlink_to(item)
    if generation_config is not None:
        (folder / "generation_config.json").unlink()
        path = source / "generation_config.json"
        (folder / "generation_config.json").write_text(json.dumps(json.loads(path.read_text()) | generation_config))
    if chat_template is not None:
        (folder / "chat_template.jinja").unlink()
        (folder / "chat_template.jinja").write_text(chat_template((source / "chat_template.jinja").read_text()))
    if tokenizer_json is not None:
        (folder / "tokenizer.json").unlink()
        edited = tokenizer_json(json.loads((source / "tokenizer.json").read_text(encoding="utf-8")))
        (folder / "tokenizer.json").write_text(json.dumps(edited), encoding="utf-8")
    return folder


def add_prefix_space(tokenizer_json: dict) -> dict:
    """A tokenizers release (or a re-saved tokenizer) whose byte-level pre-tokenizer adds
    a space before the first word: every text's first piece changes."""
    tokenizer_json["pre_tokenizer"]["add_prefix_space"] = True
    return tokenizer_json


@functools.lru_cache(maxsize=1)
def _loaded_smollm2() -> Subject:
    subject = Subject(find_card("smollm2-135m-instruct"))
    subject.model  # noqa: B018 (load once for the rows that leave the weights alone)
    return subject


def smollm2() -> Subject:
    """A SmolLM2 subject with no cached probe results, sharing one loaded model: for the
    rows that patch a library, not the weights."""
    return Subject.sharing_loaded(_loaded_smollm2())


def from_folder(card_name: str, folder: Path) -> Subject:
    return Subject(find_card(card_name).with_model(str(folder)))
