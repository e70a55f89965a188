"""The host project's own package named probes: linear probes of hidden states."""

LINEAR = "linear"


def fit(kind: str = LINEAR) -> str:
    return f"{kind} probe"
