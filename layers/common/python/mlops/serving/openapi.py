"""The OpenAPI document of one family's scoring API, generated from its schema: its own record (feature names,
types, domains, categories, which accept null) and the response of its task. Served at
GET /models/{name}/openapi.json; docs/openapi.yaml is the hand-written reference for every family."""

from __future__ import annotations

import re
from typing import Any

from mlops.core.schemas import BINARY, MULTICLASS, REGRESSION, Label, ModelFamily
from mlops.serving.decision_ids import CLIENT_ID_FIELD
from mlops.serving.scoring import FLOAT32_LIMIT, MAX_RECORDS

OPENAPI_VERSION = "3.0.3"
_ERROR_STATUSES = ("400", "404", "405", "413", "415", "503")
# Present when the request set "explain": true (binary and regression models; docs/openapi.yaml, Explanation).
EXPLANATIONS = {"type": "array", "description": "Present when the request set \"explain\" to true; one per record, "
                "in order: SHAP values on the model's raw output (docs/audit.md)",
                "items": {"type": "object", "required": ["output", "base_value", "contributions", "reasons"]}}


def family_openapi(family: ModelFamily, classes: list[Label] | None = None) -> dict[str, Any]:
    """An OpenAPI 3.0.3 document for `family`'s routes: POST /models/{name}/predict, GET /models/{name}, GET
    /models/{name}/openapi.json. `classes`: the live model's class labels in index order (classifiers), listed
    as the labels' enum when given.

    The record schema has one required property per feature: numeric features a number within the declared
    domain, else within the 32-bit float range the scoring API accepts (|x| <= 3.4028234663852886e38), categorical
    ones a string from the declared categories (any string with `unknown: other`); features with a missing-value
    strategy are nullable; plus the optional client `id` (mlops.serving.decision_ids) unless a feature is
    named so; no other property is allowed. The request body holds `instances` and the explanation
    options `explain` and `top` (the fields mlops.serving.explanations.REQUEST_FIELDS accepts); a 409 answers
    "explain": true for a version that cannot explain (a multiclass model, or one trained before explanations).
    Every 200 response carries `decision_ids`. The 200 response per task:
    binary and multiclass, `predictions` (class labels), `probabilities` (one per class, in the order of
    `classes`) and `classes`; regression, `predictions` as numbers (within the declared prediction_range) and no
    probabilities. Pure function of its arguments (JSON-ready dict)."""
    name = family.name
    op = _operation_name(name)
    record = f"{op}Record"
    json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}
    errors = {code: {"$ref": "#/components/responses/Error"} for code in _ERROR_STATUSES}
    conflict = {"description": f"\"explain\": true for a version that cannot explain it ({_unexplained(family)}); "
                "the same request without \"explain\" is scored", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"{name} scoring API", "version": "1.0",
                 "description": _description(family)},
        "paths": {
            f"/models/{name}/predict": {"post": {
                "operationId": f"predict{op}",
                "summary": f"Score 1 to {MAX_RECORDS:,} records with the live {name} model (or a canary, by weight)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": {"200": {
                    "description": "Predictions from the model version named in the body and the header",
                    "headers": {"X-Model-Version": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                                                    "required": True},
                                "X-Request-Id": {"schema": {"type": "string"}, "required": True}},
                    "content": json_body}, **errors, "409": conflict}}},
            f"/models/{name}": {"get": {
                "operationId": f"describe{op}",
                "summary": "The live and canary versions, task, feature schema, metrics and training data reference",
                "responses": {"200": {"description": "Model description", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["model", "task", "features", "request_id"]}}}},
                    "404": errors["404"], "503": errors["503"]}}},
            f"/models/{name}/openapi.json": {"get": {
                "operationId": f"openapi{op}",
                "summary": "This document",
                "responses": {"200": {"description": "The family's OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              "404": errors["404"], "503": errors["503"]}}},
        },
        "components": {
            "responses": {"Error": {
                "description": "A client mistake (4xx) or an unavailable model (503); the message names the problem",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                record: record_schema(family),
                "PredictRequest": request_schema(family, record),
                "PredictResponse": response_schema(family, classes),
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string", "minLength": 1},
                    "request_id": {"type": "string"}, "details": {"type": "object"}}},
            },
        },
    }


def request_schema(family: ModelFamily, record: str) -> dict[str, Any]:
    """The body of POST /models/{name}/predict: `instances` (1 to MAX_RECORDS records of the `record` schema) and
    the explanation options the API accepts (`explain`, `top` only with "explain": true); nothing else."""
    explain = ("true adds `explanations` to the response, one per record (SHAP values on the model's raw output, "
               f"docs/audit.md); 409 for {_unexplained(family)}")
    properties = {
        "instances": {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS,
                      "items": {"$ref": f"#/components/schemas/{record}"}},
        "explain": {"type": "boolean", "default": False, "description": explain},
        "top": {"type": "integer", "minimum": 0, "nullable": True,
                "description": "with \"explain\": true, how many reason codes each explanation lists (default: "
                               "every feature pushing toward the unfavourable outcome); refused without it"},
    }
    return {"type": "object", "additionalProperties": False, "required": ["instances"], "properties": properties,
            # `top` only together with "explain": true
            "anyOf": [{"required": ["explain"], "properties": {"explain": {"enum": [True]}}},
                      {"not": {"required": ["top"]}}, {"properties": {"top": {"enum": [None]}}}]}


def record_schema(family: ModelFamily) -> dict[str, Any]:
    """The JSON schema of one record of `family` (OpenAPI 3.0 dialect: `nullable`)."""
    properties: dict[str, Any] = {}
    for feature in family.features:
        if feature.kind == "categorical":
            schema: dict[str, Any] = {"type": "string"}
            if feature.unknown == "reject":
                schema["enum"] = list(feature.categories)
            else:
                schema["description"] = ("one of " + ", ".join(feature.categories[:20])
                                         + (" ..." if len(feature.categories) > 20 else "")
                                         + "; any other value is scored as the feature's \"other\" level")
        else:
            # Without a declared bound, the 32-bit float range the model reads (the API refuses beyond it).
            schema = {"type": "number",
                      "minimum": -FLOAT32_LIMIT if feature.minimum is None else feature.minimum,
                      "maximum": FLOAT32_LIMIT if feature.maximum is None else feature.maximum}
        if feature.accepts_missing:
            schema["nullable"] = True
        if feature.description:
            schema["description"] = feature.description
        properties[feature.name] = schema
    if CLIENT_ID_FIELD not in properties:
        properties[CLIENT_ID_FIELD] = {
            "anyOf": [{"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,128}$"},
                      {"type": "integer", "minimum": -2**63, "maximum": 2**63 - 1}],
            "description": "Optional: your own name for this record (keep it unique), echoed in `decision_ids` and "
                           "used by delayed labels (docs/performance.md); never seen by the model"}
    return {"type": "object", "additionalProperties": False, "required": family.feature_names,
            "properties": properties}


UNKNOWN_CATEGORY_WARNINGS = {
    "type": "array", "description": "Present only when a record held an undeclared category of a feature declared "
    "with `unknown: other`: one entry per record and field, scored as the feature's \"other\" level (at most 100; "
    "`warnings_omitted` counts the rest). Values are compared after trimming surrounding whitespace, as training "
    "read them, so \" Male\" is the category \"Male\" and raises no warning.",
    "items": {"type": "object", "required": ["record", "field", "value", "treated_as"], "properties": {
        "record": {"type": "integer", "minimum": 0, "description": "Index of the record in `instances`"},
        "field": {"type": "string", "description": "The feature"},
        "value": {"type": "string", "description": "The value sent (first 200 characters)"},
        "treated_as": {"type": "string", "enum": ["other"]}}}}
WARNINGS_OMITTED = {"type": "integer", "minimum": 1, "description": "Unknown-category warnings beyond the 100 listed"}


def response_schema(family: ModelFamily, classes: list[Label] | None = None) -> dict[str, Any]:
    """The 200 body of POST /models/{name}/predict for the family's task (`warnings`: undeclared categories
    scored as "other", when a feature declares `unknown: other`)."""
    common: dict[str, Any] = {
        "model": {"type": "string", "enum": [family.name]}, "version": {"type": "integer", "minimum": 1},
        "request_id": {"type": "string"},
        "decision_ids": {"type": "array", "items": {"type": "string"}, "description":
                         "One decision id per record, for delayed labels: the record's `id` when the request "
                         "gave one, else the request id (one record) or `<request id>:<index>` (a batch)"}}
    if any(f.kind == "categorical" and f.unknown == "other" for f in family.features):
        common.update({"warnings": UNKNOWN_CATEGORY_WARNINGS, "warnings_omitted": WARNINGS_OMITTED})
    if family.task == REGRESSION:
        value: dict[str, Any] = {"type": "number"}
        if family.prediction_range is not None:
            for side, bound in zip(("minimum", "maximum"), family.prediction_range, strict=True):
                if bound is not None:
                    value[side] = bound
        return {"type": "object", "required": ["model", "version", "predictions", "request_id",
                                                    "decision_ids"], "properties": {
            **common,
            "predictions": {"type": "array", "description": f"One predicted {family.target} per record, on the "
                            "target's scale", "items": value},
            "explanations": EXPLANATIONS}}
    label: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    if classes:
        label = {"enum": list(classes)}
    k: dict[str, int] = {"minItems": len(classes), "maxItems": len(classes)} if classes else \
        ({"minItems": 2, "maxItems": 2} if family.task == BINARY else {"minItems": 3})
    if family.task == BINARY:
        decided = "the positive label when its probability is at least the family's threshold"
        order = "[negative, positive]"
    else:
        decided = "the most probable class"
        order = "sorted order"
    return {"type": "object", "required": ["model", "version", "predictions", "probabilities", "classes",
                                           "request_id", "decision_ids"], "properties": {
        **common,
        "predictions": {"type": "array", "description": f"One class label per record: {decided}", "items": label},
        "probabilities": {"type": "array", "description": "Per record, the probability of each class, in the "
                          "order of `classes`", "items": {"type": "array", **k,
                                                          "items": {"type": "number", "minimum": 0, "maximum": 1}}},
        "classes": {"type": "array", "description": f"The class labels in {order}", **k, "items": label},
        **({"explanations": EXPLANATIONS} if family.task == BINARY else {})}}


def _description(family: ModelFamily) -> str:
    task = {BINARY: "a binary classifier", MULTICLASS: "a multiclass classifier", REGRESSION: "a regression"}
    text = f"Scores records with the live ONNX model of the {family.name} family, {task[family.task]} of " \
           f"{family.target!r}. Behind API Gateway every method requires IAM (SigV4) authorization."
    nullable = [f.name for f in family.features if f.accepts_missing]
    if nullable:
        text += " These features accept null (scored as training treated a missing value): " + ", ".join(nullable)
    return text


def _unexplained(family: ModelFamily) -> str:
    """Which versions of the family answer 409 to "explain": true (mlops.serving.explanations.ServedExplainer)."""
    if family.task == MULTICLASS:
        return "a multiclass model: not explained"
    if family.task == REGRESSION and not family.is_linear:
        return ("a tree-ensemble regression, whose graph re-centres the ensemble's output: explanations would not "
                "add up to the served value; or a version trained before explanations")
    return "a version trained before explanations: retrain"


def _operation_name(name: str) -> str:
    """`credit-risk` -> `CreditRisk` (operation ids and schema names)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^a-zA-Z0-9]+", name) if part)
