"""The words a card's ``load:`` and the command line may use for device, dtype and quantization,
and the rule for a card's name (imported by the plugin's options and the CLI without loading the
card schema: nothing here imports pydantic or numpy)."""

from __future__ import annotations

import re

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"
DTYPES = ("float32", "float16", "bfloat16", "auto")
QUANTIZATIONS = ("none", "nf4", "int8")

# A card's name becomes a file or folder name (its card file, its snapshot folder, cache and
# report names, a served log): one path component on every platform. Letters, digits, and
# '.', '_', '-' inside; it starts with a letter or digit and no two dots meet, so no name is
# '.', '..', hidden, or climbs out of its folder ('qwen2.5-1.5b' is a name).
CARD_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
CARD_NAME_MAX_LENGTH = 100
CARD_NAME_RULE = (
    "letters, digits, '.', '_' and '-', starting with a letter or digit, with no '..' and no '.' at the end, "
    f"at most {CARD_NAME_MAX_LENGTH} characters"
)


def card_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a card's name (one sentence naming it), or None when it can."""
    if not isinstance(name, str):
        return f"{name!r} is not a card name: give text ({CARD_NAME_RULE})"
    if len(name) > CARD_NAME_MAX_LENGTH:
        return f"'{name[:20]}...' is {len(name)} characters long; a card name has at most {CARD_NAME_MAX_LENGTH}"
    if not re.fullmatch(CARD_NAME_PATTERN, name):
        return f"{name!r} is not a card name: use {CARD_NAME_RULE}"
    return None
