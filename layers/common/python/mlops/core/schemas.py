"""Model family declarations and their policies: the contract between config, registry, training and scoring."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FAMILY_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
# Column names as data sets publish them ("person_age", "Credit.Amount", "loan-status"), safe as JSON keys,
# metric dimensions and log fields: letters, digits, '_', '.', '-', and inner spaces.
FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]{0,62}[A-Za-z0-9_.\-]$|^[A-Za-z_]$")

# What a family predicts. A binary classifier scores the positive class's probability and decides at a threshold;
# a multiclass classifier gives one probability per class and predicts the most probable one; a regression
# predicts a number on the target's scale.
Task = Literal["binary_classification", "multiclass_classification", "regression"]
BINARY: Task = "binary_classification"
MULTICLASS: Task = "multiclass_classification"
REGRESSION: Task = "regression"
# The linear model is logistic regression for the classification tasks and Ridge for regressions; random forests
# and HistGradientBoosting are the classifier or the regressor of scikit-learn, by task.
Algorithm = Literal["logistic_regression", "ridge", "random_forest", "hist_gradient_boosting"]
LINEAR_ALGORITHMS = ("logistic_regression", "ridge")
# The gate's primary metric per task (the first is the default) and which way is better. `auc` is the binary ROC
# AUC, `macro_auc` the multiclass macro one-vs-rest AUC; rmse, mae and log_loss are lower-is-better.
PrimaryMetric = Literal["auc", "macro_auc", "accuracy", "macro_f1", "log_loss", "rmse", "mae", "r2"]
TASK_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("auc",),
    MULTICLASS: ("macro_auc", "accuracy", "macro_f1", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# A multiclass target with more labels than this is refused (free text or an identifier, not a class).
MAX_CLASSES = 100
FeatureKind = Literal["numeric", "categorical"]
ServingTier = Literal["shared", "dedicated"]
SHARED: ServingTier = "shared"
DEDICATED: ServingTier = "dedicated"
# How a feature's missing values are handled. `reject`: a data set or request with a missing value is refused.
# median / mean / most_frequent / constant: imputed with the statistic fitted on training rows only, inside the ONNX
# graph (scoring treats `null` exactly as training did). `native`: HistGradientBoosting's own missing-value
# handling (the tree learns where missing values go).
MissingStrategy = Literal["reject", "median", "mean", "most_frequent", "constant", "native"]
# How a categorical feature treats a category it does not declare: `reject` refuses the row or request;
# `other` maps it to one extra "other" level, the same way in training and scoring.
UnknownCategory = Literal["reject", "other"]
# A class label as a data set publishes it: "bad", "Yes", 1, true.
Label = bool | int | float | str
DEFAULT_MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Feature(_Frozen):
    """One model input. Categorical features list their categories; the model sees their index."""

    name: str
    kind: FeatureKind = "numeric"
    categories: tuple[str, ...] = ()
    # The feature's domain: values outside are rejected at scoring and in data sets (numeric features only).
    minimum: float | None = None
    maximum: float | None = None
    missing: MissingStrategy = "reject"
    # The value a `constant` strategy fills in: a number for numeric features, a declared category otherwise.
    fill_value: float | str | None = None
    unknown: UnknownCategory = "reject"
    # `unknown: other` only: the largest share of a training data set's values of this feature that may be
    # undeclared categories (mapped to "other"); None = the family's max_unknown_share.
    max_unknown_share: float | None = Field(None, ge=0.0, le=1.0)
    # Human-readable reason text for explanations ("Too many recent late payments"); optional.
    description: str | None = Field(None, max_length=200)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not FEATURE_NAME.match(value):
            raise ValueError(f"feature name {value!r} must match {FEATURE_NAME.pattern}")
        return value

    @model_validator(mode="after")
    def _categories_match_kind(self) -> Feature:
        if self.kind == "categorical":
            if len(self.categories) < 2:
                raise ValueError(f"categorical feature {self.name!r} needs at least 2 categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"categorical feature {self.name!r} has duplicate categories")
        elif self.categories:
            raise ValueError(f"numeric feature {self.name!r} cannot declare categories")
        if self.kind == "categorical" and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"categorical feature {self.name!r} cannot declare minimum/maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum >= self.maximum:
            raise ValueError(f"feature {self.name!r}: minimum must be below maximum")
        if self.kind == "numeric" and self.unknown != "reject":
            raise ValueError(f"numeric feature {self.name!r}: 'unknown' applies to categorical features only")
        if self.max_unknown_share is not None and self.unknown != "other":
            raise ValueError(f"feature {self.name!r}: max_unknown_share applies to categorical features with "
                             "unknown: other (with unknown: reject any undeclared category refuses the data set)")
        if self.missing == "constant":
            if self.fill_value is None:
                raise ValueError(f"feature {self.name!r}: missing 'constant' needs a fill_value")
            if self.kind == "categorical" and self.fill_value not in self.categories:
                raise ValueError(f"feature {self.name!r}: fill_value {self.fill_value!r} is not a declared category")
            if self.kind == "numeric" and not isinstance(self.fill_value, int | float):
                raise ValueError(f"feature {self.name!r}: fill_value must be a number for a numeric feature")
        elif self.fill_value is not None:
            raise ValueError(f"feature {self.name!r}: fill_value is only used with missing 'constant'")
        if self.kind == "categorical" and self.missing in ("median", "mean"):
            raise ValueError(f"categorical feature {self.name!r}: missing {self.missing!r} needs numbers; "
                             "use most_frequent, constant or native")
        return self

    @property
    def accepts_missing(self) -> bool:
        """True when a missing value (empty cell, NA marker, JSON null) is valid input for this feature."""
        return self.missing != "reject"

    def bounds(self) -> tuple[float, float]:
        """The accepted range: the declared domain, else anything a 32-bit float can hold."""
        limit = 3.4028234663852886e38
        return (-limit if self.minimum is None else self.minimum, limit if self.maximum is None else self.maximum)


class GatePolicy(_Frozen):
    """Offline checks a candidate must pass before it receives any traffic."""

    min_auc: float = Field(0.65, ge=0.5, le=1.0)
    # The candidate must beat the trivial model (always predicting the training prior) on this metric at the
    # family's threshold by at least `min_lift_over_trivial`: on a 5% positive data set a model that labels almost
    # everything negative has the majority's accuracy but a balanced accuracy of about 0.5.
    trivial_model_metric: Literal["balanced_accuracy", "recall", "f1"] = "balanced_accuracy"
    min_lift_over_trivial: float = Field(0.02, ge=0.0, le=0.5)
    # Signs of target leakage, warned in the gate decision and the run (never a rejection on their own).
    leakage_auc: float = Field(0.995, gt=0.5, le=1.0)
    leakage_single_feature_auc: float = Field(0.98, gt=0.5, le=1.0)
    min_accuracy: float = Field(0.0, ge=0.0, le=1.0)
    # The live model scored on the new data's holdout (rows it did not train on): an AUC below this, from a model
    # that was good on its own holdout, says the new labels disagree with it wholesale (inverted or recoded
    # labels, a changed positive_label), which a canary cannot see when the classes are balanced (an inverted
    # model has the same positive rate). The candidate is rejected with that reason; None: not checked.
    min_live_auc_on_new_data: float | None = Field(0.5, ge=0.0, le=1.0)
    # The candidate's holdout AUC minus the live model's must be at least this (may be negative: a tolerance).
    min_auc_margin: float = Field(0.0, ge=-0.5, le=0.5)
    # The comparison with the live model uses only holdout rows the live model did not train on (an upload is
    # often the old data plus new rows). When rows had to be left out and fewer than this many remain, the
    # comparison is "not judged" (said in the decision), never a silent pass or fail.
    min_comparison_rows: int = Field(200, ge=1)
    max_demographic_parity_difference: float = Field(0.25, ge=0.0, le=1.0)
    max_equal_opportunity_difference: float = Field(0.25, ge=0.0, le=1.0)
    # A group's rate enters the fairness gate only when its denominator holds at least this many holdout rows
    # (the group's rows for the favourable rate, its truly favourable rows for the true favourable rate); smaller
    # groups are reported with their sizes. Fewer than two qualifying groups: "insufficient data", not a pass at 0.
    min_group_size: int = Field(30, ge=1)
    parity_tolerance: float = Field(1e-5, gt=0.0, le=1e-2)
    # The metric candidates are ranked on against the live model (None: the task's default, see TASK_METRICS),
    # and how much better the candidate must be on it, in the metric's own units (for rmse, mae and log_loss the
    # reduction; negative: a tolerance). None: `min_auc_margin` for the AUC metrics, 0 for the others.
    primary_metric: PrimaryMetric | None = None
    min_primary_margin: float | None = None
    # Regression fairness, in units of the holdout target's standard deviation: the spread (max - min) across the
    # sensitive groups of the mean prediction, and of the mean absolute error.
    max_mean_prediction_spread: float = Field(0.25, ge=0.0)
    max_mae_spread: float = Field(0.25, ge=0.0)

    def metric_for(self, task: str) -> str:
        """The primary metric for a family of `task`: the declared one, else the task's default."""
        return self.primary_metric or TASK_METRICS[task][0]

    def margin_for(self, metric: str) -> float:
        """The required improvement over the live model on `metric` (see `min_primary_margin`)."""
        if self.min_primary_margin is not None:
            return self.min_primary_margin
        return self.min_auc_margin if metric in ("auc", "macro_auc") else 0.0


def _retired_prediction_psi_schema(schema: dict) -> None:
    schema["properties"]["max_prediction_psi"] = {
        "type": "number", "exclusiveMinimum": 0.0, "deprecated": True,
        "description": "Retired: read as divergence_min_cohens_h = sqrt(max_prediction_psi)."}


class CanaryPolicy(_Frozen):
    """How a passing candidate is exposed to live traffic and what makes it roll back."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_retired_prediction_psi_schema)

    steps: tuple[int, ...] = (10, 50, 100)
    bake_seconds: int = Field(300, ge=0, le=86_400)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    max_p99_latency_ms: float = Field(500.0, gt=0.0)
    # The canary's predictions, vs the live version's on the same bake window, diverge when they differ
    # significantly AND by a large enough effect (docs/statistics.md, "Canary divergence"; per task, "Regression
    # and multiclass families"). `divergence_pvalue` is the level for every task: it bounds the false-rollback
    # rate of an identical model over a whole rollout, each judged step testing at divergence_pvalue / (steps - 1).
    divergence_pvalue: float = Field(0.01, gt=0.0, lt=1.0)
    # The effect sizes, per task. Binary: Cohen's h of the predicted-class shares (0 identical .. pi disjoint);
    # 0.5 is Cohen's "medium" effect and matches the retired max_prediction_psi 0.25 (for two classes PSI ~ h^2
    # for small shifts). Regression (mlops.stats.tasks.canary_divergence): the two-sample KS D of the predicted values.
    # Multiclass: the equal-weight Cramér's V of the predicted classes.
    divergence_min_cohens_h: float = Field(0.5, gt=0.0, le=math.pi)
    max_prediction_ks_statistic: float = Field(0.2, gt=0.0, le=1.0)
    max_prediction_cramers_v: float = Field(0.2, gt=0.0, le=1.0)
    # Below this many canary requests (and captured predictions on each side) in a bake window the check cannot
    # judge, so it waits another window.
    min_requests: int = Field(20, ge=1)
    # Windows short of traffic the canary waits through; the next one still short rolls it back (0: the first).
    max_idle_windows: int = Field(3, ge=0)
    # A second upload for a family waits for the running rollout: poll interval and how long before refusing.
    lock_poll_seconds: int = Field(30, ge=0, le=3600)
    lock_max_wait_seconds: int = Field(7200, ge=0, le=86_400)

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("canary steps must not be empty")
        if any(s <= 0 or s > 100 for s in value):
            raise ValueError("canary steps must be percentages in 1..100")
        if list(value) != sorted(set(value)):
            raise ValueError("canary steps must strictly increase")
        if value[-1] != 100:
            raise ValueError("the last canary step must be 100")
        if len(value) < 2:
            # At 100% the live version gets no traffic, so nothing can be compared with the canary's predictions.
            raise ValueError("canary steps need at least one step below 100 (e.g. [10, 50, 100]): at 100% the live "
                             "version serves nothing to compare the canary's predictions with")
        return value

    @model_validator(mode="before")
    @classmethod
    def _retired_prediction_psi(cls, data: object) -> object:
        """Families stored before the divergence test carry `max_prediction_psi`: read it as the equivalent
        effect size h = sqrt(PSI) (two classes: PSI ~ h^2 for small shifts), unless h is given too."""
        if isinstance(data, dict) and "max_prediction_psi" in data:
            data = dict(data)
            psi = data.pop("max_prediction_psi")
            if "divergence_min_cohens_h" in data:
                raise ValueError("max_prediction_psi is retired: keep divergence_min_cohens_h only")
            if not isinstance(psi, int | float) or isinstance(psi, bool) or not psi > 0:
                raise ValueError(f"max_prediction_psi must be a positive number, got {psi!r}")
            data["divergence_min_cohens_h"] = min(math.sqrt(psi), math.pi)
        return data


class DriftPolicy(_Frozen):
    """When captured traffic counts as drifted from the training baseline."""

    schedule: str = "rate(1 hour)"
    psi_threshold: float = Field(0.2, gt=0.0)
    ks_pvalue: float = Field(0.01, gt=0.0, lt=1.0)
    # Effect size floors: with huge samples any shift is "significant", so a test must also move this much.
    ks_min_statistic: float = Field(0.1, gt=0.0, le=1.0)
    chi2_pvalue: float = Field(0.01, gt=0.0, lt=1.0)
    chi2_min_cramers_v: float = Field(0.1, gt=0.0, le=1.0)
    min_samples: int = Field(500, ge=10)
    # Drift is confirmed when at least this many features drift.
    min_drifted_features: int = Field(1, ge=1)
    # Confirmed drift starts the pipeline on the newest data set that could train a model the family does not have
    # (mlops.monitoring.retrain; the live model's own only after a training-relevant change, mlops.core.declarations).
    auto_retrain: bool = False

    @field_validator("schedule")
    @classmethod
    def _schedule_expression(cls, value: str) -> str:
        if not re.match(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$", value):
            raise ValueError("schedule must be an EventBridge rate(...) or cron(...) expression")
        return value


# Realised metrics a family's performance policy can bound, per task (mlops.monitoring.performance computes them from
# labels); `calibration_error` is the expected calibration error (mlops.stats.calibration). Floors bound the
# higher-is-better ones from below, ceilings the errors from above.
PerformanceMetric = Literal["auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "calibration_error",
                            "macro_auc", "macro_f1", "rmse", "mae", "r2"]
PERFORMANCE_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "calibration_error"),
    MULTICLASS: ("macro_auc", "accuracy", "balanced_accuracy", "macro_f1"),
    REGRESSION: ("rmse", "mae", "r2"),
}
CEILING_METRICS = frozenset({"calibration_error", "rmse", "mae"})


class PerformancePolicy(_Frozen):
    """Performance with delayed labels (docs/performance.md): realised metrics per model version and time window
    once ground truth arrives, judged against floors, ceilings and the holdout; the estimate before labels (CBPE,
    binary families) trusted only when the model was calibrated on its holdout."""

    # Bounds on realised metrics of the task (PERFORMANCE_METRICS): floors on higher-is-better metrics
    # ({"auc": 0.7, "recall": 0.5}), ceilings on errors ({"rmse": 0.2, "calibration_error": 0.08}).
    floors: dict[PerformanceMetric, float] = Field(default_factory=dict)
    ceilings: dict[PerformanceMetric, float] = Field(default_factory=dict)
    # The primary metric (the gate's, gate.metric_for(task)) may be worse than on the training holdout by at most
    # this: in the metric's units for AUC and accuracy-like metrics, as a fraction of the holdout figure for rmse,
    # mae and log loss. None: no comparison with the holdout.
    max_degradation: float | None = Field(0.05, ge=0.0, le=1.0)
    # Decisions are grouped by when they were made: windows of `window_days` UTC days (aligned to the epoch), over
    # the last `lookback_days`; a window is judged once it has `min_labelled_rows` labels and that share of its
    # decisions labelled.
    window_days: int = Field(7, ge=1, le=90)
    lookback_days: int = Field(90, ge=1, le=400)
    min_labelled_rows: int = Field(200, ge=10)
    min_label_coverage: float = Field(0.05, ge=0.0, le=1.0)
    # Training-time calibration check of binary models (mlops.stats.calibration): the estimate is untrustworthy when the
    # holdout's expected calibration error is above `max_calibration_error` and significant at
    # `calibration_pvalue`.
    max_calibration_error: float = Field(0.05, gt=0.0, le=0.5)
    calibration_pvalue: float = Field(0.01, gt=0.0, lt=1.0)
    # A realised breach starts the pipeline on the newest data set (the drift retrain's path and lock rules).
    retrain: bool = False

    @field_validator("floors", "ceilings")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if not math.isfinite(v))
        if bad:
            raise ValueError(f"bounds must be finite numbers: {bad}")
        return value

    def bounds_for(self, task: str) -> list[tuple[str, str, float]]:
        """(metric, "floor" or "ceiling", bound) of the task, floors first, in declaration order."""
        return [(m, "floor", v) for m, v in self.floors.items()] + [(m, "ceiling", v) for m, v in self.ceilings.items()]


TrainingEngine = Literal["lambda", "sagemaker", "auto"]
# SageMaker ML instance types ("ml.m5.xlarge"); Graviton types (m6g, c7g...) are refused by the validator below.
INSTANCE_TYPE = re.compile(r"^ml\.[a-z]+[0-9]+[a-z]*\.[0-9]*(x?large|metal)$")
GRAVITON_INSTANCE = re.compile(r"^ml\.[a-z]+[0-9]+g")
MAX_JOB_SECONDS = 72_000
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$")


class TrainingPolicy(_Frozen):
    """Where the family's Train step runs (mlops.training.engines). `lambda`: the train function (15 minutes, its
    memory;
    CSV and gzip CSV). `sagemaker`: a SageMaker training job running the same entry point in AWS's prebuilt
    scikit-learn container (also Parquet). `auto`: Lambda for data sets up to `auto_lambda_max_bytes` (uncompressed
    CSV bytes) that fit in the function's limits, SageMaker above. The remaining fields configure the training
    job (CreateTrainingJob's ResourceConfig, StoppingCondition, managed spot, KMS and network isolation)."""

    engine: TrainingEngine = "lambda"
    auto_lambda_max_bytes: int = Field(100 * 1024 * 1024, gt=0)
    instance_type: str = "ml.m5.xlarge"
    volume_size_gb: int = Field(30, ge=1, le=16_384)
    # CreateTrainingJob's StoppingCondition: a job still running after this is stopped (MaxRuntimeExceeded). At most
    # 20 hours: the pipeline execution (lock, training, evaluation, canary) has 24.
    max_runtime_seconds: int = Field(3600, ge=1, le=MAX_JOB_SECONDS)
    managed_spot: bool = False
    # Spot only: how long to wait for capacity plus run (>= max_runtime_seconds); default twice the runtime.
    max_wait_seconds: int | None = Field(None, ge=1, le=MAX_JOB_SECONDS)
    # Encrypts the job's storage volume and output; None = the platform's key.
    kms_key_arn: str | None = None
    # No outbound network from the training container: inputs and outputs go through S3 channels only.
    network_isolation: bool = True

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not INSTANCE_TYPE.match(value):
            raise ValueError(f"instance_type {value!r} is not a SageMaker ML instance type such as ml.m5.xlarge")
        if GRAVITON_INSTANCE.match(value):
            raise ValueError(f"instance_type {value!r} is a Graviton (arm64) type; AWS's scikit-learn training "
                             "image is x86_64: use ml.m5, ml.c5, ml.r5...")
        return value

    @field_validator("kms_key_arn")
    @classmethod
    def _key_arn(cls, value: str | None) -> str | None:
        if value is not None and not KMS_KEY_ARN.match(value):
            raise ValueError("kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")
        return value

    @model_validator(mode="after")
    def _spot_wait(self) -> TrainingPolicy:
        if self.max_wait_seconds is not None:
            if not self.managed_spot:
                raise ValueError("max_wait_seconds applies to managed spot training only (managed_spot: true)")
            if self.max_wait_seconds < self.max_runtime_seconds:
                raise ValueError("max_wait_seconds must be at least max_runtime_seconds (it includes the runtime)")
        return self

    @property
    def spot_wait_seconds(self) -> int:
        """MaxWaitTimeInSeconds of a spot job: the declared wait, else twice the runtime (SageMaker's bound)."""
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, MAX_JOB_SECONDS)


class ModelFamily(_Frozen):
    """A model family: one task, one feature schema, one stream of versions."""

    name: str
    task: Task = BINARY
    # Default: logistic_regression for the classification tasks, ridge for a regression.
    algorithm: Algorithm = "logistic_regression"
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    target: str
    # The target value of the positive class ("bad", "Yes", 1, true): its probability is the score, and it is
    # predicted when that probability is at least `threshold`. The other value found in the data is the negative
    # class. Classes are reported in the order [negative, positive].
    positive_label: Label = 1
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    features: tuple[Feature, ...]
    # Optional: a family without one skips the fairness checks, and its gate decision says so.
    sensitive_attribute: str | None = None
    # The class label that counts as the favourable outcome in fairness figures ("good", 0, "no default"),
    # in the target's own terms. A multiclass family with a sensitive attribute declares it (the class whose
    # predicted rate is compared across groups); a regression has none (its fairness figures are spreads).
    favorable_label: Label = 0
    # Multiclass only: the classes the family predicts, in the target's own terms (`mlops families infer` writes
    # them). Declared, a data set holding another class, or lacking one, is refused, and a candidate whose classes
    # differ from the live model's passes the gate when they are these (a deliberate change of the API's classes);
    # undeclared, the gate refuses any class change.
    classes: tuple[Label, ...] | None = None
    # Regression only: predictions are clipped to [low, high] inside the ONNX graph (e.g. [0, 1] for a loss
    # given default), so the served model never answers outside the target's range. One side may be null: [0, null]
    # for an amount that cannot be negative. Training data outside the range is noted, not refused.
    prediction_range: tuple[float | None, float | None] | None = None
    seed: int = 42
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.5)
    # Every class needs at least this many rows, so the stratified holdout holds each class and training keeps it.
    min_rows_per_class: int = Field(10, ge=2)
    # CSV dialect: the delimiter is detected among , ; tab | unless declared; these cells count as missing.
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    missing_markers: tuple[str, ...] = DEFAULT_MISSING_MARKERS
    max_dataset_bytes: int = Field(200 * 1024 * 1024, gt=0)
    # A training data set in which more than this share of a categorical feature's values (`unknown: other`) are
    # undeclared categories is refused, naming the feature, the share and the values: a recoded column ("SS" for
    # "senior_secured") would otherwise reach the model as "other" on every row. A feature's own
    # max_unknown_share overrides it. Scoring is not bound by it (drift checks watch the traffic).
    max_unknown_share: float = Field(0.05, ge=0.0, le=1.0)
    capture_sample_rate: float = Field(0.1, ge=0.0, le=1.0)
    never_capture: tuple[str, ...] = ()
    gate: GatePolicy = GatePolicy()
    canary: CanaryPolicy = CanaryPolicy()
    drift: DriftPolicy = DriftPolicy()
    training: TrainingPolicy = TrainingPolicy()
    # Where the family is served (docs/architecture.md, "Serving tiers"). `shared`: the one multi-model scoring
    # function, routed by the registry's live/canary versions and canary weight (no per-family resources).
    # `dedicated`: its own scoring function and `live` alias with model-bound versions (isolation, reserved or
    # provisioned concurrency), declared in the platform configuration.
    serving: ServingTier = "shared"
    performance: PerformancePolicy = PerformancePolicy()

    @field_validator("name")
    @classmethod
    def _family_name(cls, value: str) -> str:
        if not FAMILY_NAME.match(value):
            raise ValueError(f"family name {value!r} must match {FAMILY_NAME.pattern}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_algorithm_per_task(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("task") == REGRESSION and data.get("algorithm") is None:
            return {**data, "algorithm": "ridge"}
        return data

    @model_validator(mode="after")
    def _task_consistent(self) -> ModelFamily:
        """Per-task fields: positive_label and threshold are binary only (left at their defaults otherwise, so a
        dumped family reads back); a regression takes no logistic regression, a classifier no ridge; the
        prediction range is a regression's; the primary metric must be one of the task's."""
        binary = self.task == BINARY
        if not binary:
            if not same_label(self.positive_label, 1) or self.threshold != 0.5:
                raise ValueError(f"positive_label and threshold apply to binary_classification only; a {self.task} "
                                 "family does not declare them")
        if self.task == REGRESSION:
            if self.algorithm == "logistic_regression":
                raise ValueError("algorithm 'logistic_regression' is a classifier; a regression uses ridge, "
                                 "random_forest or hist_gradient_boosting")
            if not same_label(self.favorable_label, 0):
                raise ValueError("favorable_label applies to classification tasks; a regression's fairness figures "
                                 "are the spreads of group mean predictions and errors")
        elif self.algorithm == "ridge":
            raise ValueError(f"algorithm 'ridge' is a regressor; a {self.task} family uses logistic_regression, "
                             "random_forest or hist_gradient_boosting")
        if self.prediction_range is not None:
            if self.task != REGRESSION:
                raise ValueError("prediction_range applies to regression families only")
            low, high = self.prediction_range
            shown = "[" + ", ".join("null" if b is None else f"{b}" for b in (low, high)) + "]"
            if low is None and high is None:
                raise ValueError("prediction_range [null, null] bounds nothing: declare at least one side, e.g. "
                                 "[0, null], or leave the field out")
            if any(b is not None and not math.isfinite(b) for b in (low, high)):
                raise ValueError(f"prediction_range {shown}: each bound must be a finite number or null")
            if low is not None and high is not None and not low < high:
                raise ValueError(f"prediction_range {shown} must be two finite numbers, low < high")
        if self.classes is not None:
            if self.task != MULTICLASS:
                raise ValueError("classes applies to multiclass_classification families only (a binary family "
                                 "declares positive_label; a regression has no classes)")
            if not 3 <= len(self.classes) <= MAX_CLASSES:
                raise ValueError(f"classes lists {len(self.classes)}; a multiclass family has 3 to {MAX_CLASSES}")
            texts = [label_text(c) for c in self.classes]
            repeated = sorted({t for i, t in enumerate(texts)
                               if any(same_label(self.classes[i], other) for other in self.classes[:i])})
            if repeated:
                raise ValueError(f"classes names the same class more than once: {repeated}")
            if (self.sensitive_attribute is not None and "favorable_label" in self.model_fields_set
                    and not any(same_label(self.favorable_label, c) for c in self.classes)):
                raise ValueError(f"favorable_label {label_text(self.favorable_label)!r} is not one of the declared "
                                 f"classes {texts}")
        if (self.task == MULTICLASS and self.sensitive_attribute is not None
                and "favorable_label" not in self.model_fields_set):
            raise ValueError("a multiclass family with a sensitive_attribute declares favorable_label: the class "
                             "whose predicted rate is compared across the groups")
        metric = self.gate.primary_metric
        if metric is not None and metric not in TASK_METRICS[self.task]:
            raise ValueError(f"gate.primary_metric {metric!r} does not apply to {self.task}; use one of "
                             f"{list(TASK_METRICS[self.task])}")
        return self

    @model_validator(mode="after")
    def _performance_bounds_fit_task(self) -> ModelFamily:
        """Performance floors name higher-is-better metrics of the task, ceilings its errors."""
        allowed = PERFORMANCE_METRICS[self.task]
        for kind, bounds in (("floors", self.performance.floors), ("ceilings", self.performance.ceilings)):
            for metric in bounds:
                if metric not in allowed:
                    raise ValueError(f"performance.{kind}: {metric!r} is not a metric of {self.task}; use one of "
                                     f"{list(allowed)}")
                if (metric in CEILING_METRICS) != (kind == "ceilings"):
                    other = "ceilings" if kind == "floors" else "floors"
                    raise ValueError(f"performance.{kind}: {metric!r} is bounded under {other} ("
                                     f"{'lower' if other == 'ceilings' else 'higher'} is better)")
        return self

    @model_validator(mode="after")
    def _columns_consistent(self) -> ModelFamily:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("a family needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.target in names:
            raise ValueError(f"target {self.target!r} cannot also be a feature")
        if self.sensitive_attribute is not None and self.sensitive_attribute == self.target:
            raise ValueError("sensitive_attribute cannot be the target")
        unknown = set(self.never_capture) - set(names) - {self.sensitive_attribute}
        if unknown:
            raise ValueError(f"never_capture names unknown columns: {sorted(unknown)}")
        native = [f.name for f in self.features if f.missing == "native"]
        if native and self.algorithm != "hist_gradient_boosting":
            raise ValueError(f"features {native}: missing 'native' needs algorithm hist_gradient_boosting")
        return self

    @property
    def is_linear(self) -> bool:
        """The linear algorithm of the task: logistic regression (classification) or Ridge (regression)."""
        return self.algorithm in LINEAR_ALGORITHMS

    @property
    def is_classifier(self) -> bool:
        return self.task != REGRESSION

    def declares_class(self, label: Label) -> bool:
        """Whether `label` is one of the declared `classes` (True when the family declares none)."""
        return self.classes is None or any(same_label(label, c) for c in self.classes)

    def is_positive(self, label: Label) -> bool:
        """Whether a target value (as parsed from a data set, or as declared) names the positive class."""
        return same_label(label, self.positive_label)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def unknown_share_limit(self, feature: Feature) -> float:
        """The largest share of undeclared categories a training data set may hold for `feature` (its own
        max_unknown_share, else the family's)."""
        return self.max_unknown_share if feature.max_unknown_share is None else feature.max_unknown_share

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)



def same_label(a: Label, b: Label) -> bool:
    """Whether two target values name the same class, in the target's own terms: 1, 1.0 and "1" are the same; a
    boolean matches "true"/"True"/"TRUE" (and "false" alike); other text compares exactly after trimming
    ("Yes" and "yes" are different labels)."""
    ta, tb = label_text(a), label_text(b)
    if ta == tb:
        return True
    na, nb = _as_number(ta), _as_number(tb)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return ta.lower() == tb.lower()
    return False


def label_text(value: Label) -> str:
    """A label's canonical text: booleans as true/false, integral floats without '.0', text trimmed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number else None
