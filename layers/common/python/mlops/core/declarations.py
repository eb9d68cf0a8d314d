"""Which parts of a family's declaration the trained model depends on: a retrain on a data set a model was already
trained on can only give a different model when one of them changed (mlops.monitoring.retrain). Pure, no I/O.

Training-relevant (they decide the rows read, the fitted estimator, or the ONNX artifact's bytes; the artifact
carries the features, target, classes, positive label, threshold, favourable label, missing markers, algorithm,
hyperparameters and prediction range in its metadata, mlops.training.fit.to_onnx_bytes):
- `task`, `algorithm`, `hyperparameters`, `seed`: the estimator and its fit;
- `target`, `positive_label`, `classes`, `threshold`, `favorable_label`, `prediction_range`: labels, decision rule and
  output clipping, in the graph or its metadata;
- `features` (kinds, categories, domains, missing-value strategies and fill values, unknown-category handling,
  descriptions): the columns read, how they are imputed and encoded, the metadata;
- `sensitive_attribute`: a column read with every row (not a model input, but rows are validated with it);
- `holdout_fraction`: which rows train;
- `delimiter`, `missing_markers`: how the data set's bytes are read (the markers are also in the artifact);
- `gate.parity_tolerance`: decides whether a linear model's graph reads float64 (training.fit.needs_double_precision).

Not training-relevant (acceptance limits, judging and operating policies): `min_rows_per_class`, `max_dataset_bytes`
and `max_unknown_share` (they accept or refuse a data set, never change the model trained on an accepted one), the
rest of `gate`, `canary`, `drift`, `performance`, `capture_sample_rate`, `never_capture`, `serving`, and `training`
(where it runs: the same code and pinned libraries give the same artifact on either engine). `name` never changes.
tests/unit/test_declaration_changes.py keeps the two lists covering every field of ModelFamily, so a new field needs
a decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.core.schemas import ModelFamily

TRAINING_FIELDS = ("task", "algorithm", "hyperparameters", "seed", "target", "positive_label", "classes", "threshold",
                   "favorable_label", "prediction_range", "features", "sensitive_attribute", "holdout_fraction",
                   "delimiter", "missing_markers")
# Fields of `gate` that change the trained artifact (the rest of the gate only judges it).
TRAINING_GATE_FIELDS = ("parity_tolerance",)
POLICY_FIELDS = ("name", "min_rows_per_class", "max_dataset_bytes", "max_unknown_share", "capture_sample_rate",
                 "never_capture", "gate", "canary", "drift", "performance", "serving", "training")


@dataclass(frozen=True)
class DeclarationChanges:
    """What differs between two declarations of one family, as field names in declaration order: `training`, the
    training-relevant ones (a feature change reads `features`; `gate.parity_tolerance` is named alone), and
    `other`, the rest (`gate` for any other gate field)."""

    training: tuple[str, ...]
    other: tuple[str, ...]

    @property
    def retrains_differently(self) -> bool:
        """Whether a retrain on the same data set could give another model."""
        return bool(self.training)

    def describe(self) -> str:
        """"changed: features, drift" / "changed: drift, canary; none training-relevant" / "unchanged"."""
        if self.training:
            return "changed: " + ", ".join(self.training + self.other)
        if self.other:
            return "changed: " + ", ".join(self.other) + "; none training-relevant"
        return "unchanged"


def declaration_changes(before: ModelFamily, after: ModelFamily) -> DeclarationChanges:
    """Compare two declarations field by field (their JSON dumps, so equal values of another Python type are
    equal). Returns DeclarationChanges; raises nothing."""
    old: dict[str, Any] = before.model_dump(mode="json")
    new: dict[str, Any] = after.model_dump(mode="json")
    training = [f for f in TRAINING_FIELDS if old.get(f) != new.get(f)]
    training += [f"gate.{f}" for f in TRAINING_GATE_FIELDS if old["gate"].get(f) != new["gate"].get(f)]
    other = [f for f in POLICY_FIELDS if f != "gate" and old.get(f) != new.get(f)]
    gate_rest = {k: v for k, v in old["gate"].items() if k not in TRAINING_GATE_FIELDS} != \
        {k: v for k, v in new["gate"].items() if k not in TRAINING_GATE_FIELDS}
    if gate_rest:
        other.insert(0, "gate")
    return DeclarationChanges(training=tuple(training), other=tuple(other))
