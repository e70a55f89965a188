"""Write a copy of a model folder whose decoder layer N has every weight scaled by a factor
(default 1.02): a re-released checkpoint that changed one layer a little, the break a drafted
card must catch (docs/benchmarks.md, "A model users bring"). Run the suite on the card with
``--lm-probes-model OUT``: the card's expectations against the changed weights.

    .venv/bin/python scripts/scaled_layer.py ~/.cache/lm-probes/gguf/FOLDER /tmp/scaled --layer 12
    .venv/bin/pytest tests/behaviour --lm-probes-card my-card.yaml --lm-probes-model /tmp/scaled

Every file but the weights is linked, not copied; the weights are written tensor by tensor,
one tensor of the process's own memory at a time, so a model of W bytes needs W bytes of
disk. (The source file is read through a memory map: its pages count in the peak RSS until
the kernel drops them, 7.0 GB for a 6.85 GB file, 25 s.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

WEIGHTS = "model.safetensors"


def main() -> None:
    from safetensors import safe_open

    from lm_probes.cards.files import SafetensorsWriter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a model folder with one model.safetensors")
    parser.add_argument("out", type=Path, help="the new folder (must not exist)")
    parser.add_argument("--layer", type=int, default=0)
    parser.add_argument("--factor", type=float, default=1.02)
    args = parser.parse_args()
    if not (args.folder / WEIGHTS).is_file():
        parser.error(f"{args.folder} has no {WEIGHTS} (a sharded folder is not supported here)")
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder")
    args.out.mkdir(parents=True)
    for item in args.folder.iterdir():
        if item.name != WEIGHTS:
            (args.out / item.name).symlink_to(item.resolve())

    prefix = f"model.layers.{args.layer}."
    scaled = []
    with safe_open(args.folder / WEIGHTS, framework="pt") as source:
        names = list(source.keys())
        # the GGUF conversion's writer: one tensor in memory at a time
        writer = SafetensorsWriter(
            args.out / WEIGHTS, {name: tuple(source.get_slice(name).get_shape()) for name in names}
        )
        for name in names:
            tensor = source.get_tensor(name)
            if name.startswith(prefix) and tensor.is_floating_point():
                tensor = (tensor.double() * args.factor).to(tensor.dtype)
                scaled.append(name)
            writer.add(name, tensor)
        if writer.close() is None:
            parser.error(f"{args.out / WEIGHTS}: the header outgrew the room reserved for it")
    if not scaled:
        parser.error(f"no tensor starts with {prefix!r}: the folder's layers are named otherwise")
    print(f"{args.out}: {len(scaled)} tensors of layer {args.layer} scaled by {args.factor}: {', '.join(scaled)}")


if __name__ == "__main__":
    main()
