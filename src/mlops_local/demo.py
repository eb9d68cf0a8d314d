"""`mlops demo`: the whole loop on embedded moto, told as five steps, checked at every step."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mlops import synthetic

from .runtime import LocalPlatform
from .traffic import TrafficGenerator

FAMILY = "credit-risk"


def demo_family() -> Any:
    """The demo family with time compressed: 1 s bake windows instead of minutes, every request captured."""
    return synthetic.credit_risk_family(
        name=FAMILY,
        capture_sample_rate=1.0,
        canary={"steps": [10, 50, 100], "bake_seconds": 1, "min_requests": 10, "max_idle_windows": 8,
                "lock_poll_seconds": 1, "lock_max_wait_seconds": 600},
        drift={"min_samples": 500, "auto_retrain": True},
    )


@dataclass
class Step:
    title: str
    expected: str
    observed: str = ""
    ok: bool = False
    seconds: float = 0.0


@dataclass
class DemoReport:
    steps: list[Step] = field(default_factory=list)
    live_version: int | None = None
    rejected_versions: list[int] = field(default_factory=list)
    rolled_back_versions: list[int] = field(default_factory=list)
    drift_detected: bool = False
    retrain_started: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "live_version": self.live_version, "rejected_versions": self.rejected_versions,
            "rolled_back_versions": self.rolled_back_versions, "drift_detected": self.drift_detected,
            "retrain_started": self.retrain_started, "seconds": round(self.seconds, 2),
            "steps": [{"title": s.title, "ok": s.ok, "observed": s.observed, "seconds": round(s.seconds, 2)}
                      for s in self.steps],
        }


class Demo:
    def __init__(self, out: Any = sys.stdout, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.report = DemoReport()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def run(self) -> DemoReport:
        started = time.perf_counter()
        family = demo_family()
        self.say("Starting the platform on embedded moto (S3, DynamoDB, Lambda, Step Functions, CloudWatch)...")
        platform = LocalPlatform([family]).start()
        traffic = TrafficGenerator(platform, family)
        try:
            self.say(f"  bucket s3://{platform.bucket}, registry table {platform.table}, "
                     f"state machine {platform.state_machine_arn.rsplit(':', 1)[-1]}")
            self._step_first_model(platform)
            traffic.start()
            self._step_better_model(platform, traffic)
            self._step_degraded(platform)
            self._step_silent_label_flip(platform, traffic)
            traffic.stop()
            self._step_drift(platform, traffic)
            self.report.live_version = platform_live(platform)
        finally:
            traffic.stop()
            platform.stop()
        self.report.seconds = time.perf_counter() - started
        self._summary(traffic)
        return self.report

    # ---- the five steps -------------------------------------------------------------------------------

    def _run_pipeline(self, platform: LocalPlatform, filename: str, data: bytes) -> tuple[dict[str, Any], dict]:
        before = {e["executionArn"] for e in platform.executions()}
        platform.upload_dataset(FAMILY, filename, data)
        new = [e for e in platform.executions() if e["executionArn"] not in before]
        if len(new) != 1:
            raise RuntimeError(f"expected one pipeline execution for {filename}, got {len(new)}")
        described = platform.wait_for(new[0]["executionArn"], timeout=120)
        output = json.loads(described.get("output") or "{}")
        return output, described

    def _begin(self, title: str, expected: str) -> tuple[Step, float]:
        self.say(f"\n== {title}\n   expect: {expected}")
        step = Step(title, expected)
        self.report.steps.append(step)
        return step, time.perf_counter()

    def _end(self, step: Step, started: float, ok: bool, observed: str) -> None:
        step.ok, step.observed, step.seconds = ok, observed, time.perf_counter() - started
        self.say(f"   {'OK ' if ok else 'FAILED'} {observed} ({step.seconds:.1f} s)")

    def _step_first_model(self, platform: LocalPlatform) -> None:
        step, t = self._begin("1. First model trained and live",
                              "upload datasets/credit-risk/v1.csv -> train -> ONNX -> gate (absolute) -> live")
        output, _ = self._run_pipeline(platform, "v1.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))
        version = platform.registry.get_version(FAMILY, 1)
        ok = output.get("outcome") == "promoted" and platform_live(platform) == 1
        self._end(step, t, ok, f"v1 {version.status}, holdout AUC {version.lineage['metrics']['auc']:.3f}, "
                               f"ONNX parity {version.lineage['parity']['max_abs_diff']:.1e}")

    def _step_better_model(self, platform: LocalPlatform, traffic: TrafficGenerator) -> None:
        step, t = self._begin("2. Better model canaried step by step and promoted",
                              "v2 beats v1 on the same holdout; alias live 10% -> 50% -> 100% under traffic")
        output, described = self._run_pipeline(platform, "v2.csv", synthetic.credit_risk_csv(12000, 12))
        weights = canary_weights(platform, described["executionArn"])
        v2 = platform.registry.get_version(FAMILY, 2)
        live_check = next(c for c in v2.lineage["gate"]["checks"] if c["check"] == "auc_vs_live")
        ok = output.get("outcome") == "promoted" and platform_live(platform) == 2 and weights == [10, 50]
        self._end(step, t, ok, f"v2 live after canary steps {weights} + 100; AUC margin over v1 "
                               f"{live_check['value']:+.3f}; {traffic.sent} requests so far")

    def _step_degraded(self, platform: LocalPlatform) -> None:
        step, t = self._begin("3. Degraded data set rejected at the gate",
                              "labels mostly noise -> AUC below the floor -> rejected, never receives traffic")
        output, _ = self._run_pipeline(platform, "v3.csv", synthetic.credit_risk_csv(6000, 13, label_noise=0.9))
        version = int(output.get("version") or 0)
        record = platform.registry.get_version(FAMILY, version) if version else None
        ok = output.get("outcome") == "rejected" and record is not None and record.status == "rejected" \
            and not record.function_version and platform_live(platform) == 2
        if ok:
            self.report.rejected_versions.append(version)
        status, reason = (record.status, record.status_reason) if record else ("?", "")
        self._end(step, t, ok, f"v{version} {status}: {reason}")

    def _step_silent_label_flip(self, platform: LocalPlatform, traffic: TrafficGenerator) -> None:
        step, t = self._begin("4. Candidate that passes offline checks but misbehaves live is rolled back",
                              "labels silently flipped: offline AUC looks fine, canary predictions diverge -> rollback")
        output, _ = self._run_pipeline(platform, "v4.csv", synthetic.credit_risk_csv(12000, 14, flip_labels=True))
        version = int(output.get("version") or 0)
        record = platform.registry.get_version(FAMILY, version) if version else None
        alias = platform_alias(platform)
        ok = output.get("outcome") == "rolled_back" and record is not None and record.status == "rolled_back" \
            and record.lineage["gate"]["passed"] and platform_live(platform) == 2 and not alias["weights"]
        if ok:
            self.report.rolled_back_versions.append(version)
        self._end(step, t, ok, f"v{version} passed the gate, then {record.status if record else '?'}: "
                               f"{record.status_reason if record else ''}; alias back on v2 only")

    def _step_drift(self, platform: LocalPlatform, traffic: TrafficGenerator) -> None:
        step, t = self._begin("5. Drifted traffic detected; policy starts a retrain",
                              "normal traffic -> no drift; drifted traffic -> drift -> retrain on newest good data")
        traffic.send(120, "normal")
        platform.flush_captures()
        quiet = platform.run_drift_check()["reports"][0]
        traffic.send(120, "drifted")
        platform.flush_captures()
        drifted = platform.run_drift_check()["reports"][0]
        retrain = drifted.get("retrain") or {}
        self.report.drift_detected = drifted["verdict"] == "drift"
        self.report.retrain_started = bool(retrain.get("started"))
        outcome = "not started"
        if self.report.retrain_started:
            traffic.start()
            described = platform.wait_for(retrain["execution_arn"], timeout=120)
            traffic.stop()
            outcome = json.loads(described.get("output") or "{}").get("outcome", described["status"])
        ok = quiet["verdict"] == "no_drift" and self.report.drift_detected and self.report.retrain_started \
            and outcome == "promoted"
        self._end(step, t, ok, f"first check {quiet['verdict']} ({quiet['rows']} rows); second check "
                               f"{drifted['verdict']} on {drifted['drifted_features']}; retrain on "
                               f"{retrain.get('dataset', {}).get('key', '-')} -> {outcome}")

    def _summary(self, traffic: TrafficGenerator) -> None:
        r = self.report
        self.say("\n== Summary")
        width = max(len(s.title) for s in r.steps) if r.steps else 10
        for s in r.steps:
            self.say(f"   {s.title:<{width}}  {'OK' if s.ok else 'FAILED':<6} {s.seconds:5.1f} s")
        self.say(f"   live version {r.live_version}; rejected {r.rejected_versions}; rolled back "
                 f"{r.rolled_back_versions}; drift detected {r.drift_detected}; retrain started {r.retrain_started}")
        self.say(f"   {traffic.sent} scoring requests ({traffic.records} records) served by versions "
                 f"{dict(traffic.by_version)}; statuses {dict(traffic.statuses)}")
        self.say(f"   total {r.seconds:.1f} s -> {'every step behaved as described' if r.ok else 'SOME STEPS FAILED'}")


def platform_live(platform: LocalPlatform) -> int:
    return platform.registry.get_family(FAMILY).live_version


def platform_alias(platform: LocalPlatform) -> dict[str, Any]:
    from mlops import aws

    alias = aws.client("lambda").get_alias(FunctionName=platform.scoring_functions[FAMILY], Name="live")
    return {"version": alias["FunctionVersion"],
            "weights": (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}}


def canary_weights(platform: LocalPlatform, execution_arn: str) -> list[int]:
    """The canary weights the execution went through, read from its own history."""
    from mlops import aws

    weights = []
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
    for event in history["events"]:
        details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails")
        if details and details.get("output"):
            output = json.loads(details["output"])
            if isinstance(output, dict) and "weight" in output and "window_start" in output:
                weights.append(int(output["weight"]))
    return weights


def main(as_json: bool = False) -> int:
    demo = Demo(out=sys.stdout)
    report = demo.run()
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
    return 0 if report.ok else 1
