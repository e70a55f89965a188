"""The loaded model itself: architecture and embedding matrix (SPEC E1)."""

from __future__ import annotations

import pytest

from lm_probes.expect import check_equal, check_that


@pytest.mark.observation("E1", expects="model.architecture")
def test_architecture(lm_probes_model_subject):
    check_equal(lm_probes_model_subject.card, "model.architecture", type(lm_probes_model_subject.model).__name__)


@pytest.mark.observation("E1", expects="model.embedding_shape")
def test_embedding_shape(lm_probes_model_subject):
    weight = lm_probes_model_subject.model.get_input_embeddings().weight  # (vocab, hidden)
    check_equal(lm_probes_model_subject.card, "model.embedding_shape", list(weight.shape))
    # One row per token id: the embedding and the tokenizer must agree on the vocabulary.
    check_that(
        lm_probes_model_subject.card,
        weight.shape[0] >= len(lm_probes_model_subject.tokenizer),
        expected="one embedding row per token id at least",
        obtained=f"embedding has {weight.shape[0]} rows but the tokenizer has "
        f"{len(lm_probes_model_subject.tokenizer)} ids",
    )


@pytest.mark.observation("E1", expects="model.embedding_dtype")
def test_embedding_dtype(lm_probes_model_subject):
    weight = lm_probes_model_subject.model.get_input_embeddings().weight
    check_equal(lm_probes_model_subject.card, "model.embedding_dtype", str(weight.dtype).removeprefix("torch."))
