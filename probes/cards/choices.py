"""The words a card's ``load:`` and the command line may use for device, dtype and quantization
(imported by the plugin's options without loading the card schema)."""

from __future__ import annotations

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"
DTYPES = ("float32", "float16", "bfloat16", "auto")
QUANTIZATIONS = ("none", "nf4", "int8")
