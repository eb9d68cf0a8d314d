"""The per-family OpenAPI document describes what the scoring API accepts and answers: `explain` and `top` in the
request (and nothing else), the 409 for a version that cannot explain, and the 32-bit float range of numeric
inputs without a declared domain (fresh-user pass on issue 17)."""

from __future__ import annotations

import pytest
from mlops.data import synthetic
from mlops.serving.explanations import REQUEST_FIELDS
from mlops.serving.openapi import family_openapi
from mlops.serving.scoring import FLOAT32_LIMIT
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

# `income` without a declared maximum: the API's limit is then the 32-bit float range.
FEATURES = [f.model_copy(update={"maximum": None}) if f.name == "income" else f for f in synthetic.CREDIT_FEATURES]
FAMILIES = {"binary_classification": synthetic.credit_risk_family(features=FEATURES),
            "multiclass_classification": synthetic.risk_grade_family(features=FEATURES),
            "regression": synthetic.loss_given_default_family(features=FEATURES)}


def _validator(document: dict) -> OAS30Validator:
    schema = {**document["components"]["schemas"]["PredictRequest"], "components": document["components"]}
    return OAS30Validator(schema)


def _record(family) -> dict:
    return synthetic.to_instances(synthetic.credit_task_columns(family.task, 1, 3), family)[0]


@pytest.mark.parametrize("task", list(FAMILIES))
def test_the_request_schema_accepts_what_the_api_accepts_and_nothing_else(task):
    family = FAMILIES[task]
    document = family_openapi(family)
    validate(document)
    request = document["components"]["schemas"]["PredictRequest"]
    assert tuple(request["properties"]) == REQUEST_FIELDS
    check = _validator(document)
    record = _record(family)
    assert check.is_valid({"instances": [record]})
    assert check.is_valid({"instances": [record], "explain": True, "top": 3})
    assert check.is_valid({"instances": [record], "explain": True, "top": None})
    assert not check.is_valid({"instances": [record], "top": 3})  # the API refuses top without explain
    assert not check.is_valid({"instances": [record], "ids": ["a"]})  # the API refuses unknown fields
    assert not check.is_valid({"instances": [{**record, "income": 1e39}]})
    assert check.is_valid({"instances": [{**record, "income": FLOAT32_LIMIT}]})
    assert not check.is_valid({"instances": [{**record, "age": 131}]})  # a declared domain stays the limit


@pytest.mark.parametrize("task", list(FAMILIES))
def test_predict_lists_the_409_of_an_explanation_it_cannot_give(task):
    document = family_openapi(FAMILIES[task])
    responses = document["paths"][f"/models/{FAMILIES[task].name}/predict"]["post"]["responses"]
    assert "409" in responses and "explain" in responses["409"]["description"]
    explained = "explanations" in document["components"]["schemas"]["PredictResponse"]["properties"]
    assert explained == (task != "multiclass_classification")
    if task == "multiclass_classification":
        assert "a multiclass model" in responses["409"]["description"]
