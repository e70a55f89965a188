"""lm_probes/generation_settings.py (U2) on the tiny model: what a call runs with once the
model's generation_config is merged in, including the regression it watches for, a "greedy"
call that samples because the model's config says so (huggingface/trl#5783) (issue 36: a
test file per module)."""

from __future__ import annotations

from lm_probes import generation_settings
from tests.unit.conftest import tiny


def test_a_plain_call_on_the_library_defaults_runs_greedy_with_no_processor():
    model = tiny().model
    settings = generation_settings.inherited_settings(model, {"max_new_tokens": 4})
    assert settings.effective["do_sample"] is False and settings.effective["max_new_tokens"] == 4
    assert settings.processors == ()
    assert "do_sample" not in settings.from_model and "temperature" not in settings.from_model


def test_a_models_sampling_config_makes_a_call_without_do_sample_sample_and_an_explicit_one_does_not():
    """The break: generation_config.json with do_sample and temperature 0.6 (trl#5783); the
    harmless twin: the same model asked with do_sample=False."""
    model = tiny().model
    model.generation_config.do_sample, model.generation_config.temperature = True, 0.6
    inherited = generation_settings.inherited_settings(model, {"max_new_tokens": 4})
    assert inherited.effective["do_sample"] is True and inherited.effective["temperature"] == 0.6
    assert inherited.processors[0] == "TemperatureLogitsWarper"
    assert inherited.from_model["do_sample"] is True and inherited.from_model["temperature"] == 0.6
    assert "from the model's generation_config: {" in inherited.describe()
    explicit = generation_settings.inherited_settings(model, {"max_new_tokens": 4, "do_sample": False})
    assert explicit.effective["do_sample"] is False and explicit.processors == ()
