"""A host project's tests reading its own options and fixtures."""


def test_own_options(pytestconfig, subject, model_subject):
    assert subject == {"device": "cuda:1", "model": "org/host-model"}
    assert model_subject == "org/host-model"
    assert pytestconfig.getoption("seed") == 7


def test_second_worker(subject):
    assert subject["device"] == "cuda:1"
