"""`mlops demo`: the whole loop on embedded moto, told as six stories (five on a binary family, one on a
regression) and checked at every step, then the user's own families (`--family FILE=DATA`); the summary is read
back from the registry, never from expectations."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.data import synthetic

from .apigw import proxy_event
from .runtime import LocalPlatform
from .traffic import TrafficGenerator

FAMILY = "credit-risk"
REGRESSION_FAMILY = "loss-given-default"


def demo_family() -> Any:
    """The demo family with time compressed (1 s bake windows, every request captured), judged by checks that
    do not depend on how busy the machine is:

    - a bake window ends on traffic, not on the clock: it lasts at least 1 s and until 20 canary requests and
      their captured predictions have arrived (the check answers "wait" and the window grows); up to 120 windows
      are waited for before "not enough traffic" counts against the canary;
    - the p99 latency budget is 10 s: locally a request's duration includes whatever else the machine does (the
      in-process training, other programs on a 2-core laptop), so a first call to a new version on a loaded
      machine takes longer than the 500 ms an AWS family allows; 10 s still catches a version that hangs.
    """
    return synthetic.credit_risk_family(
        name=FAMILY,
        capture_sample_rate=1.0,
        canary={"steps": [10, 50, 100], "bake_seconds": 1, "min_requests": 20, "max_idle_windows": 120,
                "max_p99_latency_ms": 10_000, "lock_poll_seconds": 1, "lock_max_wait_seconds": 600},
        drift={"min_samples": 500, "auto_retrain": True},
    )


def demo_regression_family() -> Any:
    """The regression story's family: the loss given default (0..1, predictions clipped to [0, 1] in the graph)
    on the credit features, time compressed and judged as `demo_family` is."""
    compressed = demo_family()
    return synthetic.loss_given_default_family(name=REGRESSION_FAMILY, capture_sample_rate=1.0,
                                               canary=compressed.canary.model_dump(), drift={"min_samples": 500})


@dataclass(frozen=True)
class UserFamily:
    """A family from a family file (`source`), with the data set its first model is trained on (None: no data,
    the family is only registered)."""

    family: Any
    source: Path
    data: Path | None = None


@dataclass(frozen=True)
class PipelineRun:
    """One pipeline execution: the version it registered (the registry's record; None if none) and the run."""

    record: Any
    described: dict[str, Any]
    outcome: str


@dataclass
class Step:
    title: str
    expected: str
    observed: str = "not run"
    ok: bool = False
    seconds: float = 0.0


@dataclass
class FamilyOutcome:
    """What the registry holds for one family at the end: `versions` maps version number to status."""

    name: str
    live_version: int
    versions: dict[int, str]
    source: str = ""
    data: str | None = None

    def describe(self) -> str:
        listed = ", ".join(f"v{v} {s}" for v, s in sorted(self.versions.items())) or "no versions"
        live = f"live v{self.live_version}" if self.live_version else "no live model"
        return f"{live} ({listed})"


@dataclass
class DemoReport:
    """The stories' checks, and the end state read back from the registry (never from what the stories expected)."""

    steps: list[Step] = field(default_factory=list)
    live_version: int | None = None
    versions: dict[int, str] = field(default_factory=dict)
    drift_verdicts: list[str] = field(default_factory=list)
    retrain_started: bool = False
    families: list[FamilyOutcome] = field(default_factory=list)
    regression: FamilyOutcome | None = None
    requests: int = 0
    records: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def rejected_versions(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s == "rejected")

    @property
    def rolled_back_versions(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s == "rolled_back")

    @property
    def drift_detected(self) -> bool:
        return "drift" in self.drift_verdicts

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "live_version": self.live_version, "rejected_versions": self.rejected_versions,
            "rolled_back_versions": self.rolled_back_versions, "drift_detected": self.drift_detected,
            "retrain_started": self.retrain_started, "seconds": round(self.seconds, 2),
            "versions": {str(v): s for v, s in sorted(self.versions.items())},
            "families": [{"name": f.name, "source": f.source, "data": f.data, "live_version": f.live_version,
                          "versions": {str(v): s for v, s in sorted(f.versions.items())}} for f in self.families],
            "regression": None if self.regression is None else {
                "name": self.regression.name, "live_version": self.regression.live_version,
                "versions": {str(v): s for v, s in sorted(self.regression.versions.items())}},
            "requests": self.requests, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "steps": [{"title": s.title, "ok": s.ok, "observed": s.observed, "seconds": round(s.seconds, 2)}
                      for s in self.steps],
        }


class Demo:
    """Tells the stories on a fresh platform; `run()` returns the report (also printed unless `quiet`)."""

    def __init__(self, out: Any = sys.stdout, quiet: bool = False, families: Sequence[UserFamily] = ()) -> None:
        self.out = out
        self.quiet = quiet
        self.families = list(families)
        self.report = DemoReport()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def run(self) -> DemoReport:
        started = time.perf_counter()
        family = demo_family()
        self.say("Starting the platform on embedded moto (S3, DynamoDB, Lambda, Step Functions, CloudWatch)...")
        # Captures are written every half second of a version's traffic (or 500 records): a canary check reads
        # every object of its window, and objects of a few requests each (thousands per check) made each check
        # take seconds.
        platform = LocalPlatform([family, demo_regression_family(), *(u.family for u in self.families)],
                                 capture_flush_records=500, capture_max_age_seconds=0.5).start()
        traffic = TrafficGenerator(platform, family)
        try:
            self.say(f"  bucket s3://{platform.bucket}, registry table {platform.table}, "
                     f"state machine {platform.state_machine_arn.rsplit(':', 1)[-1]}")
            self.tell(platform, traffic)
        finally:
            traffic.stop()
            try:
                self._read_back(platform, traffic)
            finally:
                platform.stop()
        self.report.seconds = time.perf_counter() - started
        self._summary()
        return self.report

    def tell(self, platform: LocalPlatform, traffic: TrafficGenerator) -> None:
        """The six stories, then one per user family. A story that raises ends the built-in stories (the
        following ones build on it); user families are still trained."""
        stories: list[tuple[str, str, Callable[[Step], None]]] = [
            ("1. First model trained and live",
             "upload datasets/credit-risk/v1.csv -> train -> ONNX -> gate (absolute) -> live",
             lambda step: self._story_first_model(platform, step)),
            ("2. Better model canaried step by step and promoted",
             "v2 beats v1 on the same holdout; canary weight 10% -> 50% -> 100% under traffic",
             lambda step: self._story_better_model(platform, traffic, step)),
            ("3. Degraded data set rejected at the gate",
             "labels mostly noise -> AUC below the floor -> rejected, never receives traffic",
             lambda step: self._story_degraded(platform, step)),
            ("4. Candidate that passes offline checks but misbehaves live is rolled back",
             "labels silently flipped, the gate's label check turned off: offline AUC looks fine, canary "
             "predictions diverge -> rollback",
             lambda step: self._story_silent_label_flip(platform, step)),
            ("5. Drifted traffic detected; policy starts a retrain",
             "normal traffic -> no drift; drifted traffic -> drift, but no retrain (nothing new to train); "
             "stronger regularisation applied -> drift -> retrain of the live data set -> canary -> live",
             lambda step: self._story_drift(platform, traffic, step)),
            ("6. A regression family: loss given default, canaried on predicted values and promoted",
             f"{REGRESSION_FAMILY} v1 live -> v2 beats it on RMSE, KS of predicted values vs v1 healthy at 10% "
             "-> 50% -> 100%; the API answers numbers in [0, 1]",
             lambda step: self._story_regression(platform, step)),
        ]
        failed = False
        for title, expected, story in stories:
            step = self._begin(title, expected)
            if failed:
                self._end(step, time.perf_counter(), False, "not run: an earlier story broke off")
                continue
            failed = not self._attempt(step, story)
        traffic.stop()
        for number, user in enumerate(self.families, start=len(stories) + 1):
            data = user.data.name if user.data else None
            step = self._begin(f"{number}. Your family {user.family.name} ({user.source.name})",
                               f"upload datasets/{user.family.name}/{data} -> train -> gate -> live" if data else
                               "registered and routed; no data given, so no model (use --family FILE=DATA.csv)")
            self._attempt(step, lambda step, user=user: self._story_user_family(platform, user, step))

    def _attempt(self, step: Step, story: Callable[[Step], None]) -> bool:
        started = time.perf_counter()
        try:
            story(step)
        except Exception as exc:  # the story's own outcome is checked; an exception means it could not be told
            self._end(step, started, False, f"broke off: {type(exc).__name__}: {str(exc)[:300]}")
            return False
        step.seconds = time.perf_counter() - started
        self.say(f"   {'OK ' if step.ok else 'FAILED'} {step.observed} ({step.seconds:.1f} s)")
        return True

    # ---- the stories ----------------------------------------------------------------------------------

    def _run_pipeline(self, platform: LocalPlatform, family: str, filename: str, data: bytes) -> PipelineRun:
        latest = platform.registry.get_family(family).latest_version
        before = {e["executionArn"] for e in platform.executions()}
        platform.upload_dataset(family, filename, data)
        new = [e for e in platform.executions() if e["executionArn"] not in before]
        if len(new) != 1:
            run = run_record(platform, family) if not new else None
            why = f": {run.get('outcome')}: {run.get('reason')}" if run and run.get("reason") else ""
            raise RuntimeError(f"expected one pipeline execution for datasets/{family}/{filename}, got {len(new)}"
                               f"{why}")
        return self._follow(platform, family, new[0]["executionArn"], latest)

    @staticmethod
    def _follow(platform: LocalPlatform, family: str, execution_arn: str, latest_before: int) -> PipelineRun:
        described = platform.wait_for(execution_arn, timeout=300)
        latest = platform.registry.get_family(family).latest_version
        record = version_record(platform, family, latest) if latest > latest_before else None
        return PipelineRun(record, described, run_outcome(platform, family, described))

    def _begin(self, title: str, expected: str) -> Step:
        self.say(f"\n== {title}\n   expect: {expected}")
        step = Step(title, expected)
        self.report.steps.append(step)
        return step

    def _end(self, step: Step, started: float, ok: bool, observed: str) -> None:
        step.ok, step.observed, step.seconds = ok, observed, time.perf_counter() - started
        self.say(f"   {'OK ' if ok else 'FAILED'} {observed} ({step.seconds:.1f} s)")

    def _story_first_model(self, platform: LocalPlatform, step: Step) -> None:
        run = self._run_pipeline(platform, FAMILY, "v1.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))
        v1 = run.record
        step.ok = v1 is not None and v1.version == 1 and v1.status == "live" and live_version(platform, FAMILY) == 1
        step.observed = f"v{v1.version} {v1.status}, holdout AUC {auc(v1)}, ONNX parity {parity(v1)}" if v1 else \
            f"no version registered; run {run.outcome}"

    def _story_better_model(self, platform: LocalPlatform, traffic: TrafficGenerator, step: Step) -> None:
        traffic.start()  # from here on, generated traffic flows through the alias (stories 2 to 4)
        run = self._run_pipeline(platform, FAMILY, "v2.csv", synthetic.credit_risk_csv(12000, 12))
        weights = canary_weights(platform, run.described["executionArn"])
        v2 = run.record
        step.ok = v2 is not None and v2.status == "live" and live_version(platform, FAMILY) == v2.version \
            and weights == [10, 50]
        if v2 is None:
            step.observed = f"no version registered; run {run.outcome}"
            return
        margin = next((c["value"] for c in v2.lineage.get("gate", {}).get("checks", [])
                       if c.get("check") == "auc_vs_live"), None)
        margin_text = f"{margin:+.3f}" if isinstance(margin, int | float) else "-"
        how = f"after canary steps {weights} + 100" if v2.status == "live" else \
            f"at canary steps {weights}: {v2.status_reason}"
        step.observed = (f"v{v2.version} {v2.status} {how}; AUC margin over the live model {margin_text}; "
                         f"{traffic.sent} requests so far")

    def _story_degraded(self, platform: LocalPlatform, step: Step) -> None:
        live_before = live_version(platform, FAMILY)
        run = self._run_pipeline(platform, FAMILY, "v3.csv", synthetic.credit_risk_csv(6000, 13, label_noise=0.9))
        record = run.record
        step.ok = record is not None and record.status == "rejected" and not record.function_version \
            and live_version(platform, FAMILY) == live_before
        step.observed = f"v{record.version} {record.status}: {record.status_reason}" if record else \
            f"no version registered; run {run.outcome}"

    def _story_silent_label_flip(self, platform: LocalPlatform, step: Step) -> None:
        live_before = live_version(platform, FAMILY)
        # By default the gate rejects inverted labels (labels_agree_with_live). The story turns that check off for
        # the run, as a run-time configuration change, to show the canary's own catch; then turns it back on.
        declared = platform.registry.get_family(FAMILY).family
        platform.registry.register_family(declared.model_copy(update={"gate": declared.gate.model_copy(
            update={"min_live_auc_on_new_data": None})}), actor="demo",
            reason="story 4: the gate's label check off, to show the canary's own catch")
        try:
            run = self._run_pipeline(platform, FAMILY, "v4.csv",
                                     synthetic.credit_risk_csv(12000, 14, flip_labels=True))
        finally:
            platform.registry.register_family(declared, actor="demo", reason="story 4 done: the label check back on")
        record = run.record
        alias = platform_alias(platform)
        # The rollback must come from the divergence check, not from a slow window or missing traffic.
        step.ok = record is not None and record.status == "rolled_back" and "diverg" in record.status_reason \
            and record.lineage.get("gate", {}).get("passed") is True \
            and live_version(platform, FAMILY) == live_before and not alias["weights"]
        if record is None:
            step.observed = f"no version registered; run {run.outcome}"
            return
        gate = "passed the gate" if record.lineage.get("gate", {}).get("passed") else "failed the gate"
        step.observed = (f"v{record.version} {gate}, then {record.status}: {record.status_reason}; traffic on "
                         f"v{live_version(platform, FAMILY)}"
                         f"{' only' if not alias['weights'] else ' with weights ' + str(alias['weights'])}")

    def _story_drift(self, platform: LocalPlatform, traffic: TrafficGenerator, step: Step) -> None:
        traffic.stop()  # the checks below judge exactly the traffic sent here
        traffic.send(120, "normal")
        platform.flush_captures()
        quiet = family_report(platform.run_drift_check(), FAMILY)
        traffic.send(120, "drifted")
        platform.flush_captures()
        # Every data set is either the live model's (under the same training-relevant declaration: a retrain would
        # reproduce it) or was ruled out by stories 3 and 4: the policy starts nothing, and the report says why.
        first = family_report(platform.run_drift_check(), FAMILY)
        waited = not (first.get("retrain") or {}).get("started")
        # The reason's first sentence, whole (the uploads it passed over are in the drift report).
        reason = str((first.get("retrain") or {}).get("reason", "-")).split("; considered:")[0]
        self.say(f"   drift without a retrain: {reason}")
        # A training-relevant change (mlops.core.declarations) makes the live model's data set worth training again.
        declared = platform.registry.get_family(FAMILY).family
        platform.registry.register_family(declared.model_copy(update={"hyperparameters": {"C": 0.1}}),
                                          actor="demo", reason="story 5: stronger regularisation for the next model")
        traffic.send(120, "drifted")
        platform.flush_captures()
        latest = platform.registry.get_family(FAMILY).latest_version
        drifted = family_report(platform.run_drift_check(), FAMILY)
        retrain = drifted.get("retrain") or {}
        outcome = "not started" + (f" ({retrain['reason']})" if retrain.get("reason") else "")
        record = None
        if retrain.get("started"):
            traffic.start()
            run = self._follow(platform, FAMILY, retrain["execution_arn"], latest)
            traffic.stop()
            record = run.record
            outcome = f"v{record.version} {record.status}" if record else f"no version registered; run {run.outcome}"
        step.ok = quiet["verdict"] == "no_drift" and first["verdict"] == drifted["verdict"] == "drift" and waited \
            and record is not None and record.status == "live" and live_version(platform, FAMILY) == record.version
        step.observed = (f"first check {quiet['verdict']} ({quiet.get('rows', 0)} rows); second check "
                         f"{first['verdict']}, no retrain{'' if waited else ' (one started!)'}; after the change, "
                         f"{drifted['verdict']} on {drifted.get('drifted_features', [])}; retrain on "
                         f"{retrain.get('dataset', {}).get('key', '-')} -> {outcome}")

    def _story_regression(self, platform: LocalPlatform, step: Step) -> None:
        family = platform.registry.get_family(REGRESSION_FAMILY).family
        first = self._run_pipeline(platform, REGRESSION_FAMILY, "v1.csv",
                                   synthetic.credit_task_csv("regression", 400, 21))
        traffic = TrafficGenerator(platform, family).start()
        try:
            run = self._run_pipeline(platform, REGRESSION_FAMILY, "v2.csv",
                                     synthetic.credit_task_csv("regression", 8000, 22))
            answer = json.loads(traffic.send_one()["body"])
        finally:
            traffic.stop()
        v1, v2 = first.record, run.record
        weights = canary_weights(platform, run.described["executionArn"])
        values = answer.get("predictions") or []
        step.ok = (v1 is not None and v2 is not None and v2.status == "live" and weights == [10, 50]
                   and live_version(platform, REGRESSION_FAMILY) == v2.version and "probabilities" not in answer
                   and bool(values) and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values))
        if v1 is None or v2 is None:
            step.observed = f"no version registered; runs {first.outcome}; {run.outcome}"
            return
        primary = v2.lineage.get("gate", {}).get("primary_metric", {})
        rmse = f"RMSE {primary['candidate']:.4f} vs live v1 {primary['live']:.4f}" if "live" in primary else "-"
        step.observed = (f"v1 {v1.status}; v2 {v2.status} after canary steps {weights} + 100 ({rmse}); the API "
                         f"answers predictions {[round(v, 3) for v in values[:3]]}")

    def _story_user_family(self, platform: LocalPlatform, user: UserFamily, step: Step) -> None:
        name = user.family.name
        if user.data is None:
            step.ok = name in platform.scoring_functions
            step.observed = f"served at POST /models/{name}/predict; no model (no data given)"
            return
        data = user.data.read_bytes()
        run = self._run_pipeline(platform, name, user.data.name, data)
        record = run.record
        step.ok = record is not None and record.status == "live" and live_version(platform, name) == record.version
        if record is None:
            step.observed = f"no model registered; run {run.outcome}"
            return
        if record.status != "live":
            step.observed = f"v{record.version} {record.status}: {record.status_reason}"
            return
        task = record.lineage.get("task", "binary_classification")
        primary = record.lineage.get("gate", {}).get("primary_metric") or {}
        figure = f"holdout AUC {auc(record)}" if task == "binary_classification" else \
            f"{task}, holdout {primary.get('name', 'metric')} {number(primary.get('candidate'))}"
        step.observed = f"v{record.version} live, {figure}, classes {record.lineage.get('classes')}"
        instances = sample_instances(data, user.family, user.data.name)
        if instances:
            response, _ = platform.invoke_scoring(name, proxy_event(
                "POST", f"/models/{name}/predict", json.dumps({"instances": instances})))
            status = int(response.get("statusCode", 0))
            body = json.loads(response.get("body") or "{}")
            answer = body.get("predictions") if status == 200 else body.get("message", "")
            nulls = sum(value is None for row in instances for value in row.values())
            step.observed += (f"; {len(instances)} rows of {user.data.name} scored through the API"
                              f"{f' ({nulls} null values)' if nulls else ''}: {status} {answer}")
            step.ok = step.ok and status < 500

    # ---- the end state ----------------------------------------------------------------------------------

    def _read_back(self, platform: LocalPlatform, traffic: TrafficGenerator) -> None:
        """Fill the report from the registry and the drift records, as they are after the stories."""
        r = self.report
        r.versions = versions(platform, FAMILY)
        r.live_version = live_version(platform, FAMILY) or None
        records = platform.registry.drift_records(FAMILY, limit=100)
        r.drift_verdicts = [str(d.get("verdict", "")) for d in reversed(records)]
        r.retrain_started = any((d.get("report") or {}).get("retrain", {}).get("started") for d in records)
        r.families = [FamilyOutcome(u.family.name, live_version(platform, u.family.name),
                                    versions(platform, u.family.name), str(u.source),
                                    str(u.data) if u.data else None) for u in self.families]
        r.regression = FamilyOutcome(REGRESSION_FAMILY, live_version(platform, REGRESSION_FAMILY),
                                     versions(platform, REGRESSION_FAMILY), "built-in")
        r.requests, r.records = traffic.sent, traffic.records
        r.by_version, r.statuses = dict(traffic.by_version), dict(traffic.statuses)

    def _summary(self) -> None:
        r = self.report
        self.say("\n== Summary")
        width = max(len(s.title) for s in r.steps) if r.steps else 10
        for s in r.steps:
            self.say(f"   {s.title:<{width}}  {'OK' if s.ok else 'FAILED':<6} {s.seconds:5.1f} s")
        builtin = FamilyOutcome(FAMILY, r.live_version or 0, r.versions)
        self.say(f"   {FAMILY} (registry): {builtin.describe()}")
        self.say(f"   drift checks {r.drift_verdicts or 'none'}; retrain started {r.retrain_started}")
        if r.regression is not None:
            self.say(f"   {REGRESSION_FAMILY} (registry, regression): {r.regression.describe()}")
        for f in r.families:
            self.say(f"   {f.name} ({f.source}{', data ' + f.data if f.data else ', no data'}): {f.describe()}")
        self.say(f"   {r.requests} scoring requests ({r.records} records) answered by model versions "
                 f"{dict(sorted(r.by_version.items()))}; statuses {r.statuses}")
        self.say(f"   total {r.seconds:.1f} s -> {'every step behaved as described' if r.ok else 'SOME STEPS FAILED'}")


def sample_instances(data: bytes, family: Any, filename: str, count: int = 3) -> list[dict[str, Any]]:
    """Up to `count` rows of a data set as scoring instances (missing cells as null), preferring rows with a
    missing value in a feature that accepts one; [] when the rows cannot be read."""
    from mlops.core.errors import PlatformError
    from mlops.data.datasets import read_table

    try:
        table = read_table(data, key=filename, delimiter=family.delimiter)
    except PlatformError:
        return []
    markers = set(family.missing_markers)
    rows = []
    for i in range(min(len(table.line_numbers), 2000)):
        row: dict[str, Any] = {}
        try:
            for feature in family.features:
                cell = table.columns[feature.name][i]
                row[feature.name] = None if cell in markers else float(cell) if feature.kind == "numeric" else cell
        except (KeyError, ValueError):
            continue
        rows.append(row)
    with_missing = [r for r in rows if any(v is None for v in r.values())][:1]
    return (with_missing + [r for r in rows if r not in with_missing])[:count]


def live_version(platform: LocalPlatform, family: str) -> int:
    return int(platform.registry.get_family(family).live_version)


def version_record(platform: LocalPlatform, family: str, version: int) -> Any:
    """The registry's record of `version`, or None when the family has no such version."""
    from mlops.core.errors import UnknownFamilyError

    try:
        return platform.registry.get_version(family, version)
    except UnknownFamilyError:
        return None


def versions(platform: LocalPlatform, family: str) -> dict[int, str]:
    """Every version of `family` in the registry with its status."""
    found: dict[int, str] = {}
    token = None
    while True:
        page = platform.registry.list_versions(family, limit=100, next_token=token, newest_first=False)
        found.update({int(v.version): v.status for v in page.items})
        token = page.next_token
        if not token:
            return found


def auc(record: Any) -> str:
    value = record.lineage.get("metrics", {}).get("auc")
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def parity(record: Any) -> str:
    value = record.lineage.get("parity", {}).get("max_abs_diff")
    return f"{value:.1e}" if isinstance(value, int | float) else "-"


def run_outcome(platform: LocalPlatform, family: str, described: dict[str, Any]) -> str:
    """What the registry's run record says about an execution (outcome, step and reason), else the execution's
    own status and error."""
    run = run_record(platform, family, str(described.get("name", "")))
    if run and run.get("outcome"):
        where = f" at {run['step']}" if run.get("step") and run["outcome"] != "promoted" else ""
        return f"{run['outcome']}{where}{': ' + str(run['reason']) if run.get('reason') else ''}"
    error = " ".join(str(described.get(k) or "") for k in ("error", "cause")).strip()
    return f"{described.get('status', '?')}{': ' + error[:300] if error else ''}"


def run_record(platform: LocalPlatform, family: str, run_id: str | None = None) -> dict[str, Any] | None:
    """The registry's record of run `run_id` of `family` (None: the newest run), or None."""
    registry = platform.registry
    try:
        if run_id:
            return registry.get_run(family, run_id)
        runs = registry.list_runs(family, limit=1)
    except Exception:  # an older registry without run records: the execution's own status is reported instead
        return None
    return runs[0] if runs else None


def family_report(result: dict[str, Any], family: str) -> dict[str, Any]:
    """The drift check's report for `family` (the check covers every family with a live model)."""
    for report in result.get("reports", []):
        if report.get("family") == family:
            return report
    raise RuntimeError(f"the drift check returned no report for {family}")


def platform_alias(platform: LocalPlatform) -> dict[str, Any]:
    """Where the demo family's traffic goes: its registry routing on the shared tier (the default), or the
    `live` alias of its own function on the dedicated tier."""
    from mlops.core import aws

    record = platform.registry.get_family(FAMILY)
    if record.family.serving != "dedicated":
        weights = {str(record.canary_version): record.canary_weight / 100} if record.canary_version and \
            record.canary_weight else {}
        return {"version": str(record.live_version), "weights": weights}
    alias = aws.client("lambda").get_alias(FunctionName=platform.scoring_functions[FAMILY], Name="live")
    return {"version": alias["FunctionVersion"],
            "weights": (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def canary_weights(platform: LocalPlatform, execution_arn: str) -> list[int]:
    """The canary weights the execution went through, read from its own history."""
    from mlops.core import aws

    weights = []
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
    for event in history["events"]:
        details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails")
        if details and details.get("output"):
            output = json.loads(details["output"])
            if isinstance(output, dict) and "weight" in output and "window_start" in output:
                weights.append(int(output["weight"]))
    return weights


def main(as_json: bool = False, families: Sequence[UserFamily] = ()) -> int:
    """Run the demo; 0 when every story behaved as described (and every family given with data went live)."""
    report = Demo(out=sys.stdout, families=families).run()
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
    return 0 if report.ok else 1
