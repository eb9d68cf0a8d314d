"""Train, Evaluate and Register on moto with data as it is published: string labels, empty and NA cells, an
unseen category, no sensitive attribute, epoch seconds, and a feature that leaks the target."""

from __future__ import annotations

import io

import boto3
import numpy as np
from mlops.core.schemas import Feature, ModelFamily
from mlops.serving.scoring import ScoringModel
from mlops.training import steps

from .conftest import BUCKET

REGIONS = ("north", "south", "east", "west")


def _upload(key: str, body: bytes) -> dict:
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"bucket": BUCKET, "key": key, "version_id": response["VersionId"]}


def loans_csv(rows: int, seed: int, leak: bool = False) -> bytes:
    """A published-style credit file: `loan_status` good/bad, empty and NA cells in the imputed columns, a
    region the family does not declare ("islands": mapped to "other")."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.8, 0.5, rows).round(-2)
    utilization = rng.beta(2, 4, rows).round(3)
    region = rng.choice(np.array([*REGIONS, "islands"]), rows, p=[0.3, 0.25, 0.2, 0.2, 0.05])
    logit = -1.2 - 1.3 * (np.log(income) - 10.8) + 3 * (utilization - 0.33) + 0.6 * (region == "south")
    bad = rng.random(rows) < 1 / (1 + np.exp(-logit))
    out = io.StringIO()
    out.write("annual income,utilization,region,loan_status" + (",recovery_fee" if leak else "") + "\n")
    for i in range(rows):
        cells = [
            "NA" if i % 17 == 3 else f"{income[i]:.0f}",
            "" if i % 23 == 5 else f"{utilization[i]}",
            "" if i % 29 == 7 else region[i],
            "bad" if bad[i] else "good",
        ]
        if leak:  # recorded after the outcome: only defaulted loans carry a recovery fee
            cells.append(f"{rng.uniform(50, 500):.2f}" if bad[i] else "0")
        out.write(",".join(cells) + "\n")
    return out.getvalue().encode()


def loans_family(name: str = "loans", leak: bool = False, **overrides) -> ModelFamily:
    features = [Feature(name="annual income", missing="median", minimum=0),
                Feature(name="utilization", missing="mean", minimum=0, maximum=1),
                Feature(name="region", kind="categorical", categories=REGIONS, unknown="other",
                        missing="most_frequent", max_unknown_share=0.1)]  # "islands": about 5% of the rows
    if leak:
        features.append(Feature(name="recovery_fee", minimum=0))
    spec = {"name": name, "algorithm": "logistic_regression", "target": "loan_status", "positive_label": "bad",
            "favorable_label": "good", "threshold": 0.4, "features": tuple(features),
            "gate": {"min_auc": 0.55, "min_lift_over_trivial": 0.0}}
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def _run(platform, family: ModelFamily, body: bytes) -> dict:
    platform.registry.put_family(family)
    event = {"family": family.name, "dataset": _upload(f"datasets/{family.name}/data.csv", body)}
    event["train"] = steps.train_step(platform, event)
    event["evaluation"] = steps.evaluate_step(platform, event)
    event["register"] = steps.register_step(platform, event, "run-1")
    return event


def test_string_labels_missing_cells_and_no_sensitive_attribute_go_through_train_evaluate_register(platform):
    family = loans_family()
    event = _run(platform, family, loans_csv(3000, 1))
    train, evaluation = event["train"], event["evaluation"]
    assert train["classes"] == ["good", "bad"] and train["positive_label"] == "bad" and train["threshold"] == 0.4
    assert [c["kind"] for c in train["dataset"]["columns"]][-1] == "target"  # no sensitive column
    assert evaluation["parity"]["ok"], evaluation["parity"]
    assert evaluation["threshold"] == 0.4 and evaluation["gate"]["threshold"] == 0.4
    assert evaluation["fairness"]["checked"] is False and evaluation["fairness"]["status"] == "not_checked"
    assert evaluation["fairness"]["reason"] == "the family declares no sensitive attribute"
    assert evaluation["gate"]["notes"] == ["fairness not checked: the family declares no sensitive attribute"]
    assert evaluation["trivial_model"]["metric"] == "balanced_accuracy"
    assert evaluation["gate"]["passed"], evaluation["gate"]["reasons"]
    lineage = platform.registry.get_version(family.name, event["register"]["version"]).lineage
    assert lineage["classes"] == ["good", "bad"] and lineage["threshold"] == 0.4
    assert lineage["positive_label"] == "bad" and lineage["trivial_model"]["lift"] > 0
    holdout = steps.load_holdout(platform.artifacts, train["holdout"]["artifact_sha256"])
    assert holdout["X"].dtype == np.float64 and np.isnan(holdout["X"]).any() and "sensitive" not in holdout
    assert (holdout["line_numbers"] >= 2).all()
    # The stored artifact serves original labels and scores null for the imputed features.
    served = ScoringModel(platform.artifacts.get_model(train["artifact"]["sha256"]))
    labels, _ = served.predict_instances([{"annual income": None, "utilization": None, "region": "islands"}])
    assert served.classes[labels[0]] in ("good", "bad")


def test_hist_gradient_boosting_on_epoch_seconds_and_1e9_amounts_passes_the_parity_gate(platform):
    rng = np.random.default_rng(2)
    rows = 4000
    seconds = 1.7e9 + rng.uniform(0, 86_400, rows)
    amount = 1e9 + rng.normal(0, 400, rows)
    bad = rng.random(rows) < 1 / (1 + np.exp(-(np.sin((seconds - 1.7e9) / 3_600) + (amount - 1e9) / 250)))
    body = "application_time,amount,loan_status\n" + "".join(
        f"{s:.3f},{a:.2f},{'bad' if b else 'good'}\n" for s, a, b in zip(seconds, amount, bad, strict=True))
    family = ModelFamily(name="epoch", algorithm="hist_gradient_boosting", target="loan_status",
                         positive_label="bad", favorable_label="good",
                         features=(Feature(name="application_time"), Feature(name="amount")))
    event = _run(platform, family, body.encode())
    parity = event["evaluation"]["parity"]
    assert event["train"]["input_dtype"] == "float64"
    assert parity["ok"] and parity["max_abs_diff"] <= 1e-5 and parity["label_mismatches"] == 0, parity


def test_a_feature_that_leaks_the_target_is_warned_in_the_decision_and_lineage_not_rejected(platform):
    family = loans_family("leaky", leak=True)
    event = _run(platform, family, loans_csv(2000, 3, leak=True))
    gate = event["evaluation"]["gate"]
    assert gate["passed"], gate["reasons"]
    assert any("'recovery_fee' alone separates the classes" in w for w in gate["warnings"])
    assert event["train"]["single_feature_auc"]["recovery_fee"] >= 0.98
    lineage = platform.registry.get_version(family.name, event["register"]["version"]).lineage
    assert lineage["warnings"] == event["evaluation"]["warnings"] == gate["warnings"]
