"""The host's own `probes` package, imported by its tests."""

from probes import LINEAR, fit


def test_linear_probe():
    assert fit() == "linear probe" and LINEAR == "linear"
