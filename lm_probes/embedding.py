"""Embedding probes: the input embedding matrix, word vectors, cosine similarity, PCA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class WordVectors:
    """One vector per word: the mean of its sub-word embedding rows."""

    words: tuple[str, ...]
    groups: tuple[str, ...]  # group name of each word
    sub_ids: tuple[tuple[int, ...], ...]  # the ids averaged for each word
    vectors: np.ndarray  # (words, hidden) float32


def word_vectors(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, groups: dict[str, list[str]]
) -> WordVectors:
    """Average of each word's sub-word rows, encoded without special tokens (no BOS row)."""
    import torch

    weight = model.get_input_embeddings().weight  # (vocab, hidden)
    words, labels, sub_ids, rows = [], [], [], []
    for group, members in groups.items():
        for word in members:
            ids = tokenizer.encode(word, add_special_tokens=False)
            if not ids:
                raise ValueError(f"word {word!r} encodes to no tokens")
            with torch.no_grad():
                rows.append(weight[ids].float().mean(dim=0).cpu().numpy())  # (hidden,)
            words.append(word)
            labels.append(group)
            sub_ids.append(tuple(int(i) for i in ids))
    return WordVectors(tuple(words), tuple(labels), tuple(sub_ids), np.stack(rows))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(n, n) cosine similarities of the rows of (n, d) vectors."""
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a word vector is all zeros; its cosine similarity is undefined")
    unit = v / norms
    return unit @ unit.T


@dataclass(frozen=True)
class GroupCoherence:
    group: str
    intra: float  # mean cosine between different words of the group
    inter: float  # mean cosine between a word of the group and a word outside it

    @property
    def margin(self) -> float:
        return self.intra - self.inter


def group_coherence(cosine: np.ndarray, groups: tuple[str, ...]) -> dict[str, GroupCoherence]:
    """Each group's mean cosine inside (between its different words) and across (to
    every word outside it). Both need words to average over: a one-word group has no
    pair inside and a group holding every word has nothing outside, and either would
    give NaN, which no bound can judge."""
    labels = np.array(groups)
    out = {}
    for group in dict.fromkeys(groups):
        inside = labels == group
        if inside.sum() < 2 or inside.all():
            raise ValueError(
                f"word group {group!r} has {int(inside.sum())} of {len(groups)} words: a group needs at least 2 words "
                "and words outside it (fix word_groups in fixtures/inputs/article.yaml)"
            )
        block = cosine[np.ix_(inside, inside)]
        n = int(inside.sum())
        intra = (block.sum() - np.trace(block)) / (n * (n - 1))  # off-diagonal mean
        inter = cosine[np.ix_(inside, ~inside)].mean()
        out[group] = GroupCoherence(group, float(intra), float(inter))
    return out


@dataclass(frozen=True)
class Projection:
    coords: np.ndarray  # (n, 2)
    explained_variance_ratio: tuple[float, float]

    @property
    def explained(self) -> float:
        return float(sum(self.explained_variance_ratio))


def pca_2d(vectors: np.ndarray) -> Projection:
    """The first two principal components of ``vectors`` (one per row), by an exact SVD
    of the centred rows. Each axis is oriented so its largest loading is positive, so
    the scatter does not mirror from run to run. (scikit-learn's PCA picks a randomized
    SVD for over 500 dimensions: explained ratios then move in the 6th decimal, and its
    import cost each worker ~1.2 s.)"""
    rows = vectors.astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2] * np.sign(axes[:2][np.arange(2), np.abs(axes[:2]).argmax(axis=1)])[:, None]
    variance = singular**2
    ratio = tuple(float(r) for r in variance[:2] / variance.sum())
    return Projection(centred @ axes.T, ratio)  # type: ignore[arg-type]


def centroid_distances(coords: np.ndarray, groups: tuple[str, ...]) -> dict[tuple[str, str], float]:
    """Euclidean distance between group centroids in the 2-D projection."""
    labels = np.array(groups)
    names = list(dict.fromkeys(groups))
    centres = {g: coords[labels == g].mean(axis=0) for g in names}
    return {(a, b): float(np.linalg.norm(centres[a] - centres[b])) for a in names for b in names if a != b}


def noise_word_vectors(sub_ids: tuple[tuple[int, ...], ...], hidden: int, seed: int) -> np.ndarray:
    """Word vectors from a random embedding: Gaussian rows for the same sub-word ids,
    averaged as ``word_vectors`` averages them (words sharing a sub-word share its row).
    The degenerate subject that an embedding bound must reject: it keeps the tokenizer's
    structure and nothing the model learned."""
    rng = np.random.default_rng(seed)
    rows = {i: rng.standard_normal(hidden) for i in sorted({i for ids in sub_ids for i in ids})}
    return np.stack([np.mean([rows[i] for i in ids], axis=0) for ids in sub_ids])
