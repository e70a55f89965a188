"""The loaded model itself: architecture, embedding matrix, BOS in generate (SPEC E1)."""

from __future__ import annotations

import pytest
import torch

from probes.expect import check_equal


@pytest.mark.observation("E1", expects="model.architecture")
def test_architecture(model_subject):
    check_equal(model_subject.card, "model.architecture", type(model_subject.model).__name__)


@pytest.mark.observation("E1", expects="model.embedding_shape")
def test_embedding_shape(model_subject):
    weight = model_subject.model.get_input_embeddings().weight  # (vocab, hidden)
    check_equal(model_subject.card, "model.embedding_shape", list(weight.shape))
    # One row per token id: the embedding and the tokenizer must agree on the vocabulary.
    assert weight.shape[0] >= len(model_subject.tokenizer), (
        f"embedding has {weight.shape[0]} rows but the tokenizer has {len(model_subject.tokenizer)} ids"
    )


@pytest.mark.observation("E1", expects="model.embedding_dtype")
def test_embedding_dtype(model_subject):
    weight = model_subject.model.get_input_embeddings().weight
    check_equal(model_subject.card, "model.embedding_dtype", str(weight.dtype).removeprefix("torch."))


@pytest.mark.observation("D3", expects="model.generate_starts_with_bos")
def test_generate_output_starts_with_bos(model_subject):
    tokenizer, model = model_subject.tokenizer, model_subject.model
    inputs = tokenizer("The capital of Japan is", return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    starts_with_bos = tokenizer.bos_token_id is not None and int(out[0, 0]) == tokenizer.bos_token_id
    check_equal(
        model_subject.card, "model.generate_starts_with_bos", starts_with_bos, note=f"generated ids: {out[0].tolist()}"
    )
