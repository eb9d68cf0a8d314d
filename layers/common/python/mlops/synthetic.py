"""Deterministic synthetic credit-risk data: realistic features, a sensitive attribute, a known label model."""

from __future__ import annotations

import io

import numpy as np

from .schemas import Feature, ModelFamily

REGIONS = ("north", "south", "east", "west", "central")
REGION_RISK = {"north": -0.2, "south": 0.25, "east": 0.0, "west": -0.1, "central": 0.1}

CREDIT_FEATURES = (
    Feature(name="age", kind="numeric", minimum=0, maximum=130),
    Feature(name="income", kind="numeric", minimum=0, maximum=1e9),
    Feature(name="debt_ratio", kind="numeric", minimum=0, maximum=100),
    Feature(name="credit_history_years", kind="numeric", minimum=0, maximum=120),
    Feature(name="late_payments", kind="numeric", minimum=0, maximum=1000),
    Feature(name="employment_years", kind="numeric", minimum=0, maximum=120),
    Feature(name="open_credit_lines", kind="numeric", minimum=0, maximum=1000),
    Feature(name="region", kind="categorical", categories=REGIONS),
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
