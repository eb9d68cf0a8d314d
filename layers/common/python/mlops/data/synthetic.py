"""Deterministic synthetic credit-risk data: realistic features, a sensitive attribute, a known label model."""

from __future__ import annotations

import io

import numpy as np

from mlops.core.schemas import Feature, ModelFamily

REGIONS = ("north", "south", "east", "west", "central")
REGION_RISK = {"north": -0.2, "south": 0.25, "east": 0.0, "west": -0.1, "central": 0.1}

# `description`: the reason text a reason code carries when the feature pushes toward default (docs/audit.md).
CREDIT_FEATURES = (
    Feature(name="age", kind="numeric", minimum=0, maximum=130, description="Applicant's age"),
    Feature(name="income", kind="numeric", minimum=0, maximum=1e9, description="Income too low"),
    Feature(name="debt_ratio", kind="numeric", minimum=0, maximum=100,
            description="Debt too high relative to income"),
    Feature(name="credit_history_years", kind="numeric", minimum=0, maximum=120,
            description="Credit history too short"),
    Feature(name="late_payments", kind="numeric", minimum=0, maximum=1000,
            description="Too many recent late payments"),
    Feature(name="employment_years", kind="numeric", minimum=0, maximum=120,
            description="Time in current employment too short"),
    Feature(name="open_credit_lines", kind="numeric", minimum=0, maximum=1000,
            description="Number of open credit lines"),
    Feature(name="region", kind="categorical", categories=REGIONS, description="Region of residence"),
)


def credit_risk_family(name: str = "credit-risk", **overrides: object) -> ModelFamily:
    """The demo family: predicts `default` (labels 0/1; 1 = the borrower defaults, the positive class; 0 is the
    favourable outcome); `sex` is the sensitive attribute."""
    spec: dict[str, object] = {
        "name": name, "algorithm": "logistic_regression", "target": "default", "positive_label": 1,
        "features": CREDIT_FEATURES, "sensitive_attribute": "sex", "favorable_label": 0,
    }
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def credit_risk_columns(rows: int, seed: int, drift: float = 0.0, label_noise: float = 0.0,
                        flip_labels: bool = False) -> dict[str, np.ndarray]:
    """Columns of a synthetic credit data set.

    The label follows a known logistic model of late payments, debt ratio, income, history and region.
    `drift` in [0, 1] moves the population (lower incomes, more debt, more late payments, a different region
    mix); `label_noise` replaces that fraction of labels with coin flips; `flip_labels` inverts every label
    (a silent data bug that offline metrics on the same data cannot see).
    """
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["F", "M"]), size=rows, p=[0.48, 0.52])
    age = np.clip(rng.normal(41 - 6 * drift, 12, rows), 18, 90).round()
    income_mu = np.log(52_000) - 0.35 * drift + np.where(sex == "M", 0.06, 0.0)
    income = np.exp(rng.normal(income_mu, 0.45, rows)).round(-2)
    debt_ratio = np.clip(rng.beta(2 + 2.5 * drift, 5, rows), 0, 1.5).round(4)
    history = np.clip((age - 18) * rng.uniform(0.2, 0.9, rows), 0, None).round(1)
    late = rng.poisson(0.6 + 1.4 * drift + 1.2 * debt_ratio, rows).astype(float)
    employment = np.clip(rng.gamma(2.0, 3.0 - 1.2 * drift, rows), 0, age - 16).round(1)
    lines = rng.poisson(4 + 2 * drift, rows).astype(float)
    region_p = np.array([0.22, 0.2, 0.2, 0.18, 0.2])
    if drift:
        region_p = (1 - drift) * region_p + drift * np.array([0.05, 0.55, 0.1, 0.1, 0.2])
    region = rng.choice(np.array(REGIONS), size=rows, p=region_p / region_p.sum())

    logit = (
        -1.6
        + 0.85 * late
        + 2.4 * (debt_ratio - 0.3)
        - 1.1 * (np.log(income) - np.log(52_000))
        - 0.05 * history
        - 0.04 * employment
        + 0.08 * (lines - 4)
        + np.vectorize(REGION_RISK.get)(region)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    if label_noise:
        noisy = rng.random(rows) < label_noise
        label = np.where(noisy, rng.integers(0, 2, rows), label)
    if flip_labels:
        label = 1 - label
    return {
        "age": age, "income": income, "debt_ratio": debt_ratio, "credit_history_years": history,
        "late_payments": late, "employment_years": employment, "open_credit_lines": lines, "region": region,
        "sex": sex, "default": label,
    }


GRADES = ("A", "B", "C", "D")


def loss_given_default_family(name: str = "loss-given-default", **overrides: object) -> ModelFamily:
    """A regression family on the credit features: predicts `lgd`, the share of the exposure lost after a default
    (0..1, predictions clipped to [0, 1] in the graph); `sex` is the sensitive attribute."""
    spec: dict[str, object] = {
        "name": name, "task": "regression", "algorithm": "ridge", "target": "lgd", "features": CREDIT_FEATURES,
        "sensitive_attribute": "sex", "prediction_range": [0.0, 1.0],
    }
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def risk_grade_family(name: str = "risk-grade", **overrides: object) -> ModelFamily:
    """A multiclass family on the credit features: predicts `grade` A (best) to D; A is the favourable class for
    fairness, `sex` the sensitive attribute."""
    spec: dict[str, object] = {
        "name": name, "task": "multiclass_classification", "algorithm": "logistic_regression", "target": "grade",
        "features": CREDIT_FEATURES, "sensitive_attribute": "sex", "favorable_label": "A",
    }
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def credit_task_columns(task: str, rows: int, seed: int, drift: float = 0.0, label_noise: float = 0.0,
                        flip_labels: bool = False) -> dict[str, np.ndarray]:
    """Columns of a synthetic credit data set whose target suits `task` (the features and `sex` as
    `credit_risk_columns` draws them, the `default` column replaced):

    - regression: `lgd` = sigmoid(-1.3 + 0.45 x the default model's risk score + N(0, 0.35)), skewed towards
      small losses (mean about 0.2);
    - multiclass_classification: `grade` A/B/C/D from the risk score plus N(0, 0.6), cut at its 40th, 70th and
      90th percentiles of the undrifted population (shares about 40/30/20/10%);
    - binary_classification: `credit_risk_columns` itself.

    `label_noise` replaces that fraction of targets with uniform draws (a value in [0, 1], or a grade);
    `flip_labels` inverts every target (1 - lgd; D..A for A..D): a silent data bug the offline metrics on the same
    data cannot see."""
    columns = credit_risk_columns(rows, seed, drift=drift)
    if task == "binary_classification":
        return credit_risk_columns(rows, seed, drift=drift, label_noise=label_noise, flip_labels=flip_labels)
    del columns["default"]
    rng = np.random.default_rng(seed + 7_919)
    risk = (0.85 * columns["late_payments"] + 2.4 * (columns["debt_ratio"] - 0.3)
            - 1.1 * (np.log(columns["income"]) - np.log(52_000)) - 0.05 * columns["credit_history_years"]
            - 0.04 * columns["employment_years"] + 0.08 * (columns["open_credit_lines"] - 4)
            + np.vectorize(REGION_RISK.get)(columns["region"]))
    noisy = rng.random(rows) < label_noise
    if task == "regression":
        lgd = 1 / (1 + np.exp(-(-1.3 + 0.45 * risk + rng.normal(0, 0.35, rows))))
        lgd = np.where(noisy, rng.random(rows), lgd).round(4)
        columns["lgd"] = 1 - lgd if flip_labels else lgd
        return columns
    score = risk + rng.normal(0, 0.6, rows)
    cuts = (-0.55, 0.5, 1.65)  # about the 40th, 70th and 90th percentiles of the undrifted score
    grade = np.digitize(score, cuts)
    grade = np.where(noisy, rng.integers(0, len(GRADES), rows), grade)
    if flip_labels:
        grade = len(GRADES) - 1 - grade
    columns["grade"] = np.asarray(GRADES)[grade]
    return columns


def credit_task_csv(task: str, rows: int, seed: int, **kwargs: object) -> bytes:
    return to_csv(credit_task_columns(task, rows, seed, **kwargs))  # type: ignore[arg-type]


def to_csv(columns: dict[str, np.ndarray]) -> bytes:
    names = list(columns)
    out = io.StringIO()
    out.write(",".join(names) + "\n")
    cells = [[_cell(v) for v in columns[n]] for n in names]
    for row in zip(*cells, strict=True):
        out.write(",".join(row) + "\n")
    return out.getvalue().encode()


def credit_risk_csv(rows: int, seed: int, **kwargs: object) -> bytes:
    return to_csv(credit_risk_columns(rows, seed, **kwargs))  # type: ignore[arg-type]


def to_instances(columns: dict[str, np.ndarray], family: ModelFamily, limit: int | None = None) -> list[dict]:
    """Scoring-API records (feature columns only) from data set columns."""
    n = len(next(iter(columns.values())))
    n = n if limit is None else min(n, limit)
    records = []
    for i in range(n):
        record = {}
        for f in family.features:
            value = columns[f.name][i]
            record[f.name] = str(value) if f.kind == "categorical" else float(value)
        records.append(record)
    return records


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)
