"""The break table's breaks (tests/unit/test_break_table.py): each imitates a library change, an
edit of our own probes, or a change of the weights or files."""

from __future__ import annotations

import functools
import json

import torch

from lm_probes import generate_calls
from lm_probes import sampling as sp
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.subjects.subject import Subject

# ------------------------------------------------- breaks imitating a library change


def generate_that_samples(monkeypatch):
    """generate() samples (fixed seed) although do_sample=False: runs still agree."""
    from transformers import GenerationMixin

    real = GenerationMixin.generate

    def sampling_generate(self, *args, **kwargs):
        if not kwargs.get("do_sample") and kwargs.get("num_beams", 1) == 1:
            kwargs.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
            torch.manual_seed(0)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", sampling_generate)


def generate_that_drifts_between_calls(monkeypatch):
    """Each generate() call adds its own tiny offset to the logits (as a kernel that is
    not deterministic across calls would), identical for every row of one batch."""
    from transformers import GenerationMixin

    real = GenerationMixin.generate
    calls = iter(range(1_000_000))

    def drifting_generate(self, *args, **kwargs):
        offset = torch.randn(self.config.vocab_size, generator=torch.Generator().manual_seed(next(calls))) * 0.05
        handle = self.get_output_embeddings().register_forward_hook(lambda m, i, out: out + offset)
        try:
            return real(self, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(GenerationMixin, "generate", drifting_generate)


def beam_search_that_runs_greedy(monkeypatch):
    """num_beams is dropped (greedy runs instead); each requested sequence is a copy."""
    from transformers import GenerationMixin

    real = GenerationMixin.generate

    def greedy_generate(self, *args, **kwargs):
        beams = kwargs.pop("num_beams", 1)
        if beams > 1:
            copies = kwargs.pop("num_return_sequences", 1)
            kwargs.pop("early_stopping", None)
            kwargs.pop("length_penalty", None)
            kwargs = {
                k: v.repeat_interleave(copies, dim=0) if k in ("input_ids", "attention_mask") else v
                for k, v in kwargs.items()
            }
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", greedy_generate)


def generate_that_ignores_stop_ids(monkeypatch):
    """generate()'s end-of-sequence criterion never fires (a stopping-criteria regression):
    the stop ids are right, but every answer runs on to max_new_tokens."""
    from transformers.generation.stopping_criteria import EosTokenCriteria

    def never(self, input_ids, *args, **kwargs):
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    monkeypatch.setattr(EosTokenCriteria, "__call__", never)


def eval_that_keeps_dropout(monkeypatch):
    """Modules stay in training mode whatever eval()/train(False) asks (dropout on)."""
    real = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: real(self, True))


def warper_top_p_one_more(monkeypatch):
    from transformers import TopPLogitsWarper

    real = TopPLogitsWarper.__call__

    def keeps_one_more(self, input_ids, scores):
        kept = real(self, input_ids, scores.clone())
        outside = torch.where(torch.isfinite(kept), torch.full_like(scores, float("-inf")), scores)
        extra = outside.argmax(dim=-1, keepdim=True)
        return kept.scatter(-1, extra, scores.gather(-1, extra))

    monkeypatch.setattr(TopPLogitsWarper, "__call__", keeps_one_more)


def warper_top_k_one_more(monkeypatch):
    from transformers import TopKLogitsWarper

    real = TopKLogitsWarper.__call__

    def off_by_one(self, input_ids, scores):
        self_k = self.top_k
        self.top_k = self_k + 1
        try:
            return real(self, input_ids, scores)
        finally:
            self.top_k = self_k

    monkeypatch.setattr(TopKLogitsWarper, "__call__", off_by_one)


def warper_temperature_ignored(monkeypatch):
    from transformers import TemperatureLogitsWarper

    monkeypatch.setattr(TemperatureLogitsWarper, "__call__", lambda self, input_ids, scores: scores)


def warpers_ignored(monkeypatch):
    """generate() drops temperature and top-p: it samples at T = 1 from everything."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    monkeypatch.setattr(TemperatureLogitsWarper, "__call__", lambda self, input_ids, scores: scores)
    monkeypatch.setattr(TopPLogitsWarper, "__call__", lambda self, input_ids, scores: scores)


def generate_that_never_samples(monkeypatch):
    """generate() ignores do_sample=True and decodes greedily (each requested sequence a copy)."""
    from transformers import GenerationMixin

    real = GenerationMixin.generate

    def greedy_generate(self, *args, **kwargs):
        if kwargs.get("do_sample"):
            copies = kwargs.pop("num_return_sequences", 1)
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            kwargs = {
                k: v.repeat_interleave(copies, dim=0) if k in ("input_ids", "attention_mask") else v
                for k, v in kwargs.items()
            }
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", greedy_generate)


# ----------------------------------------------------- breaks of our own probes


def own_temperature_ignored(monkeypatch):
    monkeypatch.setattr(sp, "apply_temperature", lambda logits, temperature: logits.clone())


def bos_run_without_bos(monkeypatch):
    """The BOS-on greedy run no longer puts BOS in front (the probe as it was before
    issue 10): with a tokenizer that adds none, BOS on and off are the same input."""
    real = generate_calls.prompt_ids
    monkeypatch.setattr(
        generate_calls,
        "prompt_ids",
        lambda tok, prompt, add_special_tokens=True, force_bos=False: real(tok, prompt, add_special_tokens),
    )


# ------------------------------------------------------------- breaks of weights


def chat_template_tokenized_with_special_tokens(monkeypatch):
    """apply_chat_template(tokenize=True) encodes the rendered text with the tokenizer's
    special tokens on: a template that writes BOS gets a second one (transformers#37686)."""
    from transformers import PreTrainedTokenizerBase

    real = PreTrainedTokenizerBase.apply_chat_template

    def adds_special_tokens(self, conversation, *args, tokenize=True, **kwargs):
        if not tokenize:
            return real(self, conversation, *args, tokenize=False, **kwargs)
        kwargs.pop("return_dict", None)
        return {"input_ids": self.encode(real(self, conversation, *args, tokenize=False, **kwargs))}

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", adds_special_tokens)


def padding_mask_ignored(monkeypatch):
    """The causal mask is built without the attention mask: left-padded rows attend to
    their padding (a masking regression), so a prompt's batched greedy run changes."""
    from transformers.models.llama import modeling_llama
    from transformers.models.mistral import modeling_mistral

    for module in (modeling_mistral, modeling_llama):
        for name in ("create_causal_mask", "create_sliding_window_causal_mask"):
            real = getattr(module, name, None)
            if real is not None:
                monkeypatch.setattr(module, name, functools.partial(_without_padding_mask, real))


def _without_padding_mask(real, *args, attention_mask=None, **kwargs):
    return real(*args, attention_mask=None, **kwargs)


def sdpa_that_scales_scores(monkeypatch, factor: float = 1.05):
    """The sdpa attention back-end computes softmax(factor * QK^T / sqrt(d)): a kernel
    whose scaling changed."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    real = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def scaled(module, query, key, value, attention_mask, scaling=None, **kwargs):
        scaling = (scaling if scaling is not None else query.shape[-1] ** -0.5) * factor
        return real(module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", scaled)


def joining_as_cleanup(monkeypatch, subject: Subject) -> Subject:
    """decode() with clean_up_tokenization_spaces on, as transformers 4's default had it for
    these tokenizers (v5 ignores it for BPE unless forced: forced here), for this test only:
    'Hello , world !' reads 'Hello, world!'. The setting spelled out as it is passes
    (test_decode_spacing.py)."""
    tokenizer = subject.tokenizer
    monkeypatch.setattr(tokenizer, "clean_up_tokenization_spaces", True)
    monkeypatch.setattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", True)
    return subject


def recorded_first_greedy_token(card_name: str = "tiny-mistral") -> int:
    """The first new token of the committed snapshot's BOS-on greedy run."""
    recorded = json.loads((SNAPSHOT_DIR / card_name / "cpu.json").read_text(encoding="utf-8"))
    return recorded["observed"]["greedy"]["bos"]["ids"][0]


def shuffle_embedding_rows(subject: Subject) -> Subject:
    with torch.no_grad():
        weight = subject.model.get_input_embeddings().weight
        weight.copy_(weight[torch.randperm(weight.shape[0], generator=torch.Generator().manual_seed(0))])
    return subject


def flip_first_greedy_token(subject: Subject) -> Subject:
    first = recorded_first_greedy_token(subject.name)
    with torch.no_grad():  # that token's output row pushed far down
        subject.model.lm_head.weight[first] *= -3
    return subject


def collapse_embedding(subject: Subject) -> Subject:
    """Every row projected on one direction, plus 1% noise: an embedding of effective
    rank ~1 (a constant row would not do: PCA centres the vectors first)."""
    with torch.no_grad():
        weight = subject.model.get_input_embeddings().weight
        direction = weight[0] / weight[0].norm()
        noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
        weight.copy_((weight @ direction)[:, None] * direction + 0.01 * weight.std() * noise)
    return subject


def noise_embedding(subject: Subject) -> Subject:
    """Gaussian rows of the same scale: no learned structure left (seeded)."""
    with torch.no_grad():
        weight = subject.model.get_input_embeddings().weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * weight.std())
    return subject
