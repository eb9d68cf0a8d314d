"""Settings read from the environment and model family declarations: every invalid field is named."""

from __future__ import annotations

import pytest
from mlops.core.errors import ConfigurationError
from mlops.core.schemas import Feature, ModelFamily
from mlops.core.settings import Env, ScoringSettings, TriggerSettings, env_var_names, load_settings
from mlops.data.synthetic import credit_risk_family
from pydantic import ValidationError as PydanticValidationError


def test_settings_error_names_every_missing_and_invalid_variable():
    with pytest.raises(ConfigurationError) as raised:
        load_settings(ScoringSettings, {Env.ARTIFACT_BUCKET: "bucket", Env.MODEL_VERSION: "seven"})
    message = str(raised.value)
    assert Env.REGISTRY_TABLE in message and Env.MODEL_FAMILY in message and Env.MODEL_VERSION in message
    assert "'seven'" in message


def test_settings_load_from_the_shared_variable_names():
    settings = load_settings(TriggerSettings, {
        Env.ARTIFACT_BUCKET: "bucket", Env.REGISTRY_TABLE: "table",
        Env.STATE_MACHINE_ARN: "arn:aws:states:us-east-1:123456789012:stateMachine:p",
    })
    assert settings.artifact_bucket == "bucket"
    assert env_var_names(TriggerSettings) == {Env.ARTIFACT_BUCKET, Env.REGISTRY_TABLE, Env.STATE_MACHINE_ARN}


def test_scoring_settings_parse_never_capture_list():
    settings = load_settings(ScoringSettings, {
        Env.ARTIFACT_BUCKET: "bucket", Env.REGISTRY_TABLE: "table", Env.MODEL_FAMILY: "credit-risk",
        Env.NEVER_CAPTURE: "income, age", Env.MODEL_VERSION: "3", Env.MODEL_SHA256: "a" * 64,
    })
    assert settings.never_capture_fields == {"income", "age"} and settings.model_version == 3


@pytest.mark.parametrize(("override", "field"), [
    ({"name": "Bad_Name"}, "name"),
    ({"target": "age"}, "cannot also be a feature"),
    ({"sensitive_attribute": "default"}, "sensitive_attribute"),
    ({"algorithm": "xgboost"}, "algorithm"),
    ({"holdout_fraction": 0.9}, "holdout_fraction"),
    ({"capture_sample_rate": 2}, "capture_sample_rate"),
    ({"never_capture": ["nope"]}, "never_capture"),
    ({"canary": {"steps": [50, 10, 100]}}, "strictly increase"),
    ({"canary": {"steps": [10, 50]}}, "last canary step must be 100"),
    ({"canary": {"bake_seconds": -1}}, "bake_seconds"),
    ({"drift": {"schedule": "every hour"}}, "schedule"),
    ({"drift": {"min_samples": 1}}, "min_samples"),
    ({"gate": {"min_auc": 2}}, "min_auc"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_invalid_family_field_is_named_in_the_error(override, field):
    spec = credit_risk_family().model_dump(mode="json")
    for key, value in override.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    with pytest.raises(PydanticValidationError) as raised:
        ModelFamily.model_validate(spec)
    assert field in str(raised.value)


def test_categorical_feature_needs_distinct_categories():
    with pytest.raises(PydanticValidationError, match="duplicate categories"):
        Feature(name="region", kind="categorical", categories=("a", "a"))
    with pytest.raises(PydanticValidationError, match="cannot declare categories"):
        Feature(name="age", kind="numeric", categories=("a",))
