"""False-alarm rates by simulation: how often a check raises an alarm when nothing changed.

Each simulation repeats one check many times on data where the null hypothesis holds by construction (traffic
drawn from the training distribution) and reports the share of alarms as a bench row, against the rate the
policy promises. Figures, not test assertions (`make bench`; `--quick` runs a few trials as a smoke test).

Add a simulation with the `simulation` decorator: a function (trials, rng) -> (alarms, detail) that runs
`trials` independent checks and returns how many alarmed plus any detail for the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Trial = Callable[[int, np.random.Generator], tuple[int, dict[str, Any]]]
Row = Callable[..., None]

TRIALS = 1_000
QUICK_TRIALS = 20


@dataclass(frozen=True)
class Simulation:
    name: str
    limit: float  # the false-alarm rate the policy promises
    target: str
    trial: Trial


SIMULATIONS: list[Simulation] = []


def simulation(name: str, limit: float, target: str) -> Callable[[Trial], Trial]:
    """Register a false-alarm simulation as a bench row named `name`, met when its rate is <= `limit`."""
    def register(trial: Trial) -> Trial:
        SIMULATIONS.append(Simulation(name, limit, target, trial))
        return trial
    return register


def run(row: Row, quick: bool) -> None:
    """Run every registered simulation and report one row each (bench/run.py's `row`)."""
    trials = QUICK_TRIALS if quick else TRIALS
    for number, sim in enumerate(SIMULATIONS):
        alarms, detail = sim.trial(trials, np.random.default_rng(1000 + number))
        rate = alarms / trials
        row(sim.name, rate, "rate", sim.target, rate <= sim.limit, alarms=alarms, trials=trials, **detail)


# ---- drift: same-distribution traffic per feature kind ---------------------------------------------------------

DRIFT_BASELINE_ROWS = 2_000  # a small training set: its own sampling noise is part of what a check must absorb
CATEGORY_SHARES = (0.5, 0.25, 0.15, 0.08, 0.02)
# Many levels, most of them rare (5 at 10%, 50 at 1%): with a small baseline, most cells sit near the pooling limit.
MANY_LEVEL_SHARES = (0.1,) * 5 + (0.01,) * 50
MANY_LEVEL_BASELINE_ROWS = 640
CATEGORICAL_KINDS = {"categorical": CATEGORY_SHARES, "55-level categorical": MANY_LEVEL_SHARES}


def _category_draw(shares: tuple[float, ...]) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, n: rng.choice(len(shares), n, p=shares).astype(np.float64)


FEATURE_KINDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "continuous": lambda rng, n: rng.lognormal(10.0, 0.6, n),
    "one-decimal": lambda rng, n: np.round(rng.beta(2.0, 3.0, n), 1),
    "integer": lambda rng, n: rng.poisson(1.0, n).astype(np.float64),
    **{kind: _category_draw(shares) for kind, shares in CATEGORICAL_KINDS.items()},
}
BASELINE_ROWS = {"55-level categorical": MANY_LEVEL_BASELINE_ROWS}


def drift_false_alarms(kind: str, trials: int, rng: np.random.Generator, baseline_rows: int = DRIFT_BASELINE_ROWS,
                       traffic_rows: int | None = None, min_samples: int | None = None) -> tuple[int, dict[str, Any]]:
    """`trials` drift checks of a one-feature family under the default DriftPolicy (with `min_samples` lowered
    when given), each with a fresh training sample and fresh traffic of `traffic_rows` (default: min_samples,
    where a check is noisiest) from the same distribution. Returns the number of "drift" verdicts and which test
    raised them."""
    from mlops.core.schemas import DriftPolicy
    from mlops.data.synthetic import credit_risk_family
    from mlops.monitoring.drift import compare_with_baseline
    from mlops.stats.profile import baseline_profile

    policy = DriftPolicy() if min_samples is None else DriftPolicy(min_samples=min_samples)
    traffic_rows = traffic_rows or policy.min_samples
    feature = ({"name": "x", "kind": "categorical",
                "categories": [f"c{i}" for i in range(len(CATEGORICAL_KINDS[kind]))]}
               if kind in CATEGORICAL_KINDS else {"name": "x", "kind": "numeric"})
    family = credit_risk_family(features=[feature])
    draw = FEATURE_KINDS[kind]
    alarms = 0
    by_test: dict[str, int] = {}
    for _ in range(trials):
        baseline = draw(rng, baseline_rows)
        profile = baseline_profile(family, baseline.reshape(-1, 1), rng.random(baseline_rows))
        report = compare_with_baseline(family, profile, {"x": draw(rng, traffic_rows)}, rng.random(traffic_rows),
                                       policy)
        if report["verdict"] == "drift":
            alarms += 1
            for reason in report["features"]["x"]["drift_reasons"]:
                test = reason.split(" ")[0]
                by_test[test] = by_test.get(test, 0) + 1
    return alarms, {"baseline_rows": baseline_rows, "traffic_rows": traffic_rows, "alarms_by_test": by_test}


def _register_drift(kind: str) -> None:
    from mlops.core.schemas import DriftPolicy

    policy = DriftPolicy()
    limit = policy.chi2_pvalue if kind in CATEGORICAL_KINDS else policy.ks_pvalue
    baseline_rows = BASELINE_ROWS.get(kind, DRIFT_BASELINE_ROWS)
    name = f"drift false alarms, {kind} feature, same distribution" + (
        f", {baseline_rows} baseline rows" if kind in BASELINE_ROWS else "")
    simulation(name, limit, f"<= {limit} (p-value)")(
        lambda trials, rng: drift_false_alarms(kind, trials, rng, baseline_rows=baseline_rows))


for _kind in FEATURE_KINDS:
    _register_drift(_kind)

# Small windows (`min_samples` lowered to 10, as the policy allows): where the chi-square approximation fails and
# sparse tables get the Monte Carlo p-value (mlops.stats.distributions.pooled_chi_square). Before it: 3.5% (PSI
# deciles, 50 rows) and 4.7% (55 levels, 20 rows) against the promised 1%.
SMALL_WINDOWS = (("continuous", 20), ("continuous", 50), ("categorical", 20), ("55-level categorical", 20),
                 ("55-level categorical", 50))


def _register_small_window(kind: str, traffic_rows: int) -> None:
    from mlops.core.schemas import DriftPolicy

    limit = DriftPolicy().chi2_pvalue if kind in CATEGORICAL_KINDS else DriftPolicy().ks_pvalue
    baseline_rows = BASELINE_ROWS.get(kind, DRIFT_BASELINE_ROWS)
    simulation(f"drift false alarms, {kind} feature, same distribution, {traffic_rows} traffic rows "
               f"(min_samples 10), {baseline_rows} baseline rows", limit, f"<= {limit} (p-value)")(
        lambda trials, rng: drift_false_alarms(kind, trials, rng, baseline_rows=baseline_rows,
                                               traffic_rows=traffic_rows, min_samples=10))


for _kind, _rows in SMALL_WINDOWS:
    _register_small_window(_kind, _rows)


# ---- canary: an identical model behind the alias -------------------------------------------------------------

CANARY_MAX_ROWS = 2_000  # canary predictions captured in one bake window, drawn log-uniformly from min_requests up


def _identical_canary_check(policy: Any, rng: np.random.Generator, rate: float, canary_rows: int,
                            weight: int) -> tuple[bool, bool]:
    """One check of a canary serving the live model itself at `weight`% of the traffic: both versions' predicted
    classes are Bernoulli(rate) on their share of the window. Returns (diverged now, the retired PSI rule fired)."""
    from mlops.stats.canary import prediction_divergence
    from mlops.stats.distributions import psi

    live_rows = max(policy.min_requests, round(canary_rows * (100 - weight) / weight))
    live_positive, canary_positive = rng.binomial(live_rows, rate), rng.binomial(canary_rows, rate)
    live = np.repeat(np.array([0, 1]), [live_rows - live_positive, live_positive])
    canary = np.repeat(np.array([0, 1]), [canary_rows - canary_positive, canary_positive])
    verdict = prediction_divergence(live, canary, policy)
    retired = psi(np.bincount(live, minlength=2), np.bincount(canary, minlength=2)) > 0.25
    return bool(verdict["diverged"]), retired


@simulation("canary false rollbacks, identical model, default policy (per rollout)", 0.01, "<= 0.01")
def canary_false_rollbacks(trials: int, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """`trials` rollouts of the live model's own artifact under the default CanaryPolicy: every step below 100 is
    judged once, on a window of min_requests..2,000 canary predictions (log-uniform) and the live share of the same
    traffic, at a positive rate drawn log-uniformly in [0.5%, 60%]. A rollout is a false rollback when any step
    diverges; the retired rule (class PSI over 0.25) is counted on the same windows."""
    from mlops.core.schemas import CanaryPolicy

    policy = CanaryPolicy()
    rollbacks = retired_rollbacks = checks = diverged_checks = 0
    for _ in range(trials):
        rate = float(np.exp(rng.uniform(np.log(0.005), np.log(0.6))))
        outcomes = [_identical_canary_check(policy, rng, rate, int(np.exp(rng.uniform(
            np.log(policy.min_requests), np.log(CANARY_MAX_ROWS)))), weight) for weight in policy.steps[:-1]]
        checks += len(outcomes)
        diverged_checks += sum(new for new, _ in outcomes)
        rollbacks += any(new for new, _ in outcomes)
        retired_rollbacks += any(old for _, old in outcomes)
    return rollbacks, {"checks": checks, "false_rollbacks_per_check": round(diverged_checks / checks, 4),
                       "retired_psi_rule_rollbacks": retired_rollbacks, "steps": list(policy.steps)}


@simulation("canary false rollbacks, identical model, 25 canary rows at 5.5% positive", 0.01, "<= 0.01")
def canary_false_rollbacks_small_window(trials: int, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """The reported case: the same artifact re-uploaded, judged at 10% on windows of 25 canary predictions (and
    225 live ones) at a 5.5% positive rate, one check each; the retired PSI rule rolled back 8 of 12."""
    from mlops.core.schemas import CanaryPolicy

    policy = CanaryPolicy()
    outcomes = [_identical_canary_check(policy, rng, 0.055, 25, 10) for _ in range(trials)]
    return sum(new for new, _ in outcomes), {"retired_psi_rule_rollbacks": sum(old for _, old in outcomes),
                                             "canary_rows": 25, "live_rows": 225}
