"""A host conftest as ML test suites write them: common option names, fixtures of its own."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="the host's own device option")
    parser.addoption("--model", default="host/model", help="the host's own model option")
    parser.addoption("--seed", type=int, default=0, help="the host's own seed")


@pytest.fixture
def subject(request):
    return {"device": request.config.getoption("device"), "model": request.config.getoption("model")}


@pytest.fixture
def model_subject(subject):
    return subject["model"]
