"""The probe inputs shared by every card (fixtures/inputs/article.yaml): words, prompts,
questions. Cards say what each model should do with them."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from lm_probes.paths import INPUTS_DIR

INPUTS_FILE = INPUTS_DIR / "article.yaml"


@cache
def article_inputs() -> dict[str, Any]:
    with open(INPUTS_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def knowledge_question(case_id: str) -> str:
    questions = {q["id"]: q["question"] for q in article_inputs()["knowledge"]}
    if case_id not in questions:
        raise KeyError(f"knowledge case '{case_id}' is not in {INPUTS_FILE.name}; known: {', '.join(questions)}")
    return questions[case_id]


# a question for a model without a chat template: draft-card's default prompt format, and U8's
# for a card that names none
QUESTION_FORMAT = "Question: {question}\nAnswer:"


def format_prompt(tokenizer: Any, prompt_format: str, question: str) -> str:
    """A question in the card's prompt format: a template with {question}, or "chat"."""
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt_format 'chat' needs a tokenizer with a chat template; this one has none")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
    if "{question}" not in prompt_format:
        raise ValueError(f"prompt_format {prompt_format!r} must contain {{question}} or be 'chat'")
    return prompt_format.replace("{question}", question)
