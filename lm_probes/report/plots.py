"""Figures for the report, as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lm_probes.decoding import NextToken, TemperatureSweep
    from lm_probes.embedding import Projection
    from lm_probes.quantization import PromptDrift


def _figure(width: float, height: float, ncols: int = 1, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Tokens can be CJK; use a font that has the glyphs when one is installed.
    plt.rcParams["font.family"] = ["DejaVu Sans", "Noto Sans CJK JP", "IPAexGothic", "sans-serif"]
    return plt.subplots(1, ncols, figsize=(width, height), **kwargs)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # a token in a script no installed font covers is drawn as a box: not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def cosine_heatmap(cosine: np.ndarray, words: tuple[str, ...], title: str) -> bytes:
    fig, ax = _figure(7.5, 6.5)
    image = ax.imshow(cosine, cmap="viridis")
    ax.set_xticks(range(len(words)), words, rotation=90)
    ax.set_yticks(range(len(words)), words)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="cosine similarity")
    return _png(fig)


def pca_scatter(projection: Projection, words: tuple[str, ...], groups: tuple[str, ...], title: str) -> bytes:
    fig, ax = _figure(7, 5.5)
    for group in dict.fromkeys(groups):
        mask = np.array(groups) == group
        ax.scatter(projection.coords[mask, 0], projection.coords[mask, 1], label=group)
    for (x, y), word in zip(projection.coords, words):
        ax.annotate(word, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    r1, r2 = projection.explained_variance_ratio
    ax.set_title(f"{title}\nPCA: PC1 {r1:.1%} + PC2 {r2:.1%} = {r1 + r2:.1%} of the variance")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=8)
    return _png(fig)


def next_token_bars(result: NextToken, title: str) -> bytes:
    fig, ax = _figure(8, 4)
    labels = [label.replace("\n", "\\n") for label in result.labels()]
    ax.bar(range(len(labels)), result.top_probs)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylabel("probability")
    ax.set_title(f"{title}\nnext token after {result.prompt!r}")
    return _png(fig)


def temperature_panels(sweep: TemperatureSweep, labels: list[str], title: str) -> bytes:
    count = len(sweep.temperatures)
    fig, axes = _figure(4 * count, 4, ncols=count, sharey=True)
    axes = np.atleast_1d(axes)
    clean = [label.replace("\n", "\\n") for label in labels]
    for ax, t, probs, entropy in zip(axes, sweep.temperatures, sweep.top_probs, sweep.entropies):
        ax.bar(range(len(probs)), probs)
        ax.set_xticks(range(len(probs)), clean, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"T = {t}  (entropy {entropy:.2f} nats)")
    axes[0].set_ylabel("probability")
    fig.suptitle(title)
    return _png(fig)


def drift_bars(prompt: PromptDrift, reference: str, quantized: str) -> bytes:
    """The reference's and the quantized model's top-10 next tokens, side by side."""
    return side_by_side_bars(
        ((reference, prompt.top_reference), (quantized, prompt.top_quantized)),
        f"next token after {prompt.prompt!r}: KL {prompt.kl:.3f} nats, top-10 overlap {prompt.top10_overlap:.0%}",
    )


def side_by_side_bars(sides: Sequence[tuple[str, Sequence[tuple[int, str, float]]]], title: str) -> bytes:
    """Two (or more) sides' top next tokens, (id, token, probability) each, in panels side by side."""
    fig, axes = _figure(5.5 * len(sides), 4, ncols=len(sides), sharey=True)
    for ax, (name, top) in zip(np.atleast_1d(axes), sides):
        labels = [f"{i}: {t}".replace("\n", "\\n") for i, t, _ in top]
        ax.bar(range(len(top)), [p for _, _, p in top])
        ax.set_xticks(range(len(top)), labels, rotation=45, ha="right")
        ax.set_title(name)
    np.atleast_1d(axes)[0].set_ylabel("probability")
    fig.suptitle(title)
    return _png(fig)
