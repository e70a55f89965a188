"""Memory near the weights (issue 34): the GGUF conversion holds one tensor at a time and
writes what the load-and-save conversion wrote, bit for bit; each step's peak RSS is
measured (lm_probes/memory.py) and shown in the report's Subjects table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lm_probes import memory
from lm_probes.paths import REPO_ROOT

# What the conversion may hold besides 1.3x the weights: the largest tensor's de-quantisation
# (gguf's numpy intermediates) and the GGUF readers' metadata, for this small file.
CONVERSION_OVERHEAD = 0.1e9

# A Llama GGUF of ~100M parameters (W = 0.4 GB in float32) in Q8_0, written here: the
# weights dominate what a conversion holds, as for a real model, and its 4096-piece
# vocabulary keeps the metadata reads short (SmolLM2's 49 152 pieces cost ~15 s per read).
_WRITE_GGUF = """
import sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

hidden, ffn, layers, heads, kv_heads, vocab = 1024, 4096, 6, 8, 4, 4096
writer = gguf.GGUFWriter(sys.argv[1], "llama")
writer.add_name("lm-probes memory test")
writer.add_context_length(2048)
writer.add_embedding_length(hidden)
writer.add_feed_forward_length(ffn)
writer.add_block_count(layers)
writer.add_head_count(heads)
writer.add_head_count_kv(kv_heads)
writer.add_rope_dimension_count(hidden // heads)
writer.add_rope_freq_base(10000.0)
writer.add_layer_norm_rms_eps(1e-5)
writer.add_vocab_size(vocab)
rng = np.random.default_rng(0)

def matrix(name, rows, cols):
    weights = rng.standard_normal((rows, cols), dtype=np.float32) * 0.02
    writer.add_tensor(name, gguf.quants.quantize(weights, Q.Q8_0), raw_dtype=Q.Q8_0)

matrix("token_embd.weight", vocab, hidden)  # no output.weight: tied embeddings
writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
kv = kv_heads * hidden // heads
for i in range(layers):
    writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    for name, rows, cols in (("attn_q", hidden, hidden), ("attn_k", kv, hidden), ("attn_v", kv, hidden),
                             ("attn_output", hidden, hidden), ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden),
                             ("ffn_down", hidden, ffn)):
        matrix(f"blk.{i}.{name}.weight", rows, cols)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file(progress=False)
writer.close()
"""

# Run in a fresh process: its peak RSS is the conversion's alone, not the test session's.
_CONVERT = """
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM
from lm_probes import memory
from lm_probes.cards.files import write_gguf_weights
from safetensors.torch import load_file

gguf, out, old = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
memory.reset_peak()
start = memory.peak_rss()
write_gguf_weights(gguf, out)
peak = memory.peak_rss()
written = load_file(out / "model.safetensors")
weights = sum(t.numel() * t.element_size() for t in written.values())
# before: transformers' own GGUF load, whose state dict and config the old conversion saved
before = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
state = {k: v for k, v in before.state_dict().items() if k not in before.all_tied_weights_keys}
different = sorted(k for k in state if k not in written or not torch.equal(state[k], written[k]))
del before.config.quantization_config
before.config.architectures = [type(before).__name__]
before.config.save_pretrained(str(old))
reloaded = AutoModelForCausalLM.from_pretrained(str(out))
print(json.dumps({
    "tied": reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr(),
    "growth": peak - start, "weights": weights, "different": different, "extra": sorted(set(written) - set(state)),
    "lm_head_written": "lm_head.weight" in written,
}))
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not memory.reset_peak():
        pytest.skip("/proc/self/clear_refs is not writable here: no peak of one step to measure")
    folder = tmp_path_factory.mktemp("gguf")
    gguf_file, out, old = folder / "tiny-llama.Q8_0.gguf", folder / "converted", folder / "old-config"
    out.mkdir()
    for script, args in ((_WRITE_GGUF, [gguf_file]), (_CONVERT, [gguf_file, out, old])):
        result = subprocess.run(
            [sys.executable, "-c", script, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return out, old, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_streamed_conversion_writes_the_loaded_models_tensors_bit_for_bit(converted):
    out, old, found = converted
    assert found["different"] == [] and found["extra"] == [], found
    # tied embeddings stay tied: lm_head is not written (as save_pretrained leaves it out),
    # and the folder loads it tied
    assert not found["lm_head_written"]
    config = json.loads((out / "config.json").read_text())
    assert config == json.loads((old / "config.json").read_text())  # the one save_pretrained wrote
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True and "quantization_config" not in config
    assert found["tied"]  # the folder loaded: lm_head is the embedding


def test_the_conversion_holds_one_copy_of_the_weights(converted):
    """The old conversion (load the GGUF, build a second plain model, load_state_dict, save)
    grew the process by 2.4x the weights (SmolLM2-135M: 1.28 GB for 0.54 GB); the bound fails it."""
    _, _, found = converted
    weights, growth = found["weights"], found["growth"]
    assert weights > 3.5e8  # ~100M parameters in float32, the tied embedding written once
    assert growth <= 1.3 * weights + CONVERSION_OVERHEAD, f"grew {growth / 1e9:.2f} GB for {weights / 1e9:.2f} GB"


@pytest.fixture
def fresh_steps(monkeypatch):
    monkeypatch.setattr(memory, "STEPS", {})
    monkeypatch.setattr(memory, "_OPEN", [])


def test_a_step_sees_its_own_peak_and_not_an_earlier_one(fresh_steps):
    import numpy as np

    with memory.step("card-a", "load"):
        block = np.ones(200_000_000 // 8)  # 200 MB touched
        del block
    with memory.step("card-b", "load"):
        pass
    a, b = memory.peaks("card-a"), memory.peaks("card-b")
    assert a["load"].since_step and a["load"].bytes >= b["load"].bytes + 150e6
    # card-a's probes ran from its load's end to card-b's load; card-b's still run
    assert set(a) == {"load", "probes"} and set(b) == {"load", "probes"}
    assert a["probes"].bytes < a["load"].bytes - 150e6


def test_a_step_inside_another_counts_in_both(fresh_steps):
    import numpy as np

    with memory.step("card", "load"), memory.step(memory.file_key("ab" * 32), "conversion"):
        block = np.ones(200_000_000 // 8)
        del block
    load, conversion = memory.peaks("card")["load"], memory.peaks("file:" + "ab" * 8)["conversion"]
    assert load.bytes >= conversion.bytes - 1e6 and conversion.bytes > 200e6


def test_without_clear_refs_the_figures_say_they_are_the_process_peak(fresh_steps, monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    with memory.step("card", "load"):
        pass
    peaks = memory.peaks("card")
    assert not peaks["load"].since_step
    cell = memory.describe({name: peak.as_json() for name, peak in peaks.items()})
    assert cell.startswith("load ") and "process peak so far: /proc/self/clear_refs not writable" in cell


def test_the_subjects_table_shows_each_steps_peak_sent_by_a_worker(fresh_steps):
    """A worker's row (JSON) carries the figures; the controller's report shows them."""
    from lm_probes.cards.card import find_card
    from lm_probes.plugin.session import SessionRecord
    from lm_probes.report.html import summary_html
    from lm_probes.subjects.subject import Subject

    worker = SessionRecord(in_use=True)
    subject = worker.subjects["mistral-tokenizer"] = Subject(find_card("mistral-tokenizer"))
    with memory.step(subject.name, "load"):  # what the model_subject fixture's hook records
        subject.tokenizer  # noqa: B018
    controller = SessionRecord()
    controller.merge(worker.to_json({}))
    page = summary_html(
        subjects=controller.subject_rows(), observations={}, snapshots={}, benchmarks=None, fragments={}
    )
    table = page.split("<h2>Subjects</h2>", 1)[1].split("</table>", 1)[0]
    assert "peak RSS</th></tr>" in table
    cell = table.rsplit("<td>", 1)[1]
    assert cell.startswith("load ") and " GB · probes " in cell and "clear_refs" not in cell, cell
    assert memory.describe({}) == "-"  # a row without figures (an older worker's)


def test_a_transformers_whose_gguf_helpers_moved_converts_through_the_load(tmp_path, monkeypatch):
    """transformers 4.57.6's get_gguf_hf_weights_map takes the model alone, 5.x's the tensor
    processor too (upgrade-check and bisect convert under both): a helper that refuses the
    call (here a TypeError, as a changed signature raises) leaves the conversion to the load,
    which writes the same folder."""
    from safetensors.torch import load_file

    from lm_probes.cards import files
    from lm_probes.cards.files import write_gguf_weights

    small = _WRITE_GGUF.replace("= 1024, 4096, 6, 8, 4, 4096", "= 64, 128, 2, 4, 2, 4096")
    gguf_file = tmp_path / "small.Q8_0.gguf"
    result = subprocess.run([sys.executable, "-c", small, str(gguf_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    streamed, loaded = tmp_path / "streamed", tmp_path / "loaded"
    streamed.mkdir(), loaded.mkdir()
    write_gguf_weights(gguf_file, streamed)

    def moved(*args, **kwargs):  # what 5.x's call of 4.57.6's helper raised before the signature was read
        raise TypeError("get_gguf_hf_weights_map() takes from 1 to 4 positional arguments but 2 were given")

    monkeypatch.setattr(files, "_stream_gguf_tensors", moved)
    write_gguf_weights(gguf_file, loaded)
    a, b = load_file(streamed / "model.safetensors"), load_file(loaded / "model.safetensors")
    assert sorted(a) == sorted(b) and all(a[k].equal(b[k]) for k in a)
    assert json.loads((loaded / "config.json").read_text()) == json.loads((streamed / "config.json").read_text())
