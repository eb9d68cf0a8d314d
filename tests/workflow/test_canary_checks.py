"""The canary check rolls back on errors and on latency of the new version, within one bake interval."""

from __future__ import annotations

import time

import pytest
from mlops.data import synthetic
from mlops.serving import shared
from mlops.serving.api import ScoringService

from .conftest import TIERS, entered_states, live_model, run_upload


@pytest.fixture()
def misbehaving_version(monkeypatch):
    """Make scoring misbehave only when it serves model version 2 (the canary): in the dedicated function's
    sandbox bound to v2, or for v2's requests in the shared function."""
    def misbehave(kind: str) -> None:
        if kind == "errors":
            raise RuntimeError("canary bug: unhandled exception in the new version")
        time.sleep(0.25)

    def install(kind: str):
        original = ScoringService.predict
        original_response = shared.predict_response

        def predict(self, event, request_id):
            if self.settings.model_version == 2:
                misbehave(kind)
            return original(self, event, request_id)

        def predict_response(model, family, version, *args):
            if version == 2:
                misbehave(kind)
            return original_response(model, family, version, *args)

        monkeypatch.setattr(ScoringService, "predict", predict)
        monkeypatch.setattr(shared, "predict_response", predict_response)

    return install


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(("kind", "needle"), [("errors", "error rate"), ("latency", "p99 latency")])
def test_canary_breach_rolls_back_within_one_bake_interval(platform, new_family, traffic, misbehaving_version,
                                                            kind, needle, tier):
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"max_p99_latency_ms": 150, "steps": [50, 100]},
                        serving=tier)
    live_model(platform, family, rows=1500)
    misbehaving_version(kind)
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(1500, 8))
    generator.stop()
    assert output["outcome"] == "rolled_back", described
    assert entered_states(described["executionArn"]).count("CanaryCheck") == 1
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.status == "rolled_back" and needle in v2.status_reason
    record = platform.registry.get_family(family.name)
    assert record.live_version == 1 and record.canary_version == 0
    if kind == "errors":
        assert generator.statuses[502] > 0, "the broken canary really served (and failed) requests"
