"""A family that must not capture (capture_sample_rate 0) still rolls new models out: its canary is judged on
errors and p99 latency only, and every decision says the predictions were not compared (fresh-user pass on issue
12: it waited for captured predictions that never come and rolled every new model back as "not enough canary
traffic")."""

from __future__ import annotations

from mlops.data import synthetic

from .conftest import fast_family, run_upload


def test_a_family_with_captures_off_is_canaried_on_errors_and_latency_then_promoted(platform, traffic):
    declared = fast_family("wf-nocapture")
    family = declared.model_copy(update={"capture_sample_rate": 0.0})
    platform.add_family(family)
    first = synthetic.credit_risk_csv(800, 11, label_noise=0.35)
    output, described = run_upload(platform, family.name, "v1.csv", first)
    assert output.get("outcome") == "promoted", described
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(12000, 12))
    generator.stop()
    assert output["outcome"] == "promoted", described
    assert generator.by_version["2"] > 0  # the canary answered part of the traffic
    (newest,) = [r for r in platform.registry.list_runs(family.name) if r.get("version") == 2 or
                 (r.get("canary") or {}).get("version") == 2][:1]
    check = newest["canary"]["last_check"]
    assert newest["canary"]["ended"] == "promoted"
    assert check["canary_predictions"] == 0 and "captures off" in " ".join(check["reasons"])
