"""`mlops audit` shows the reason codes the client received (the stored top-k), says when a request was not
explained, accepts an uppercase request id, names an unknown --family, and reports what its search scanned."""

from __future__ import annotations

import json

import pytest
from mlops.data import synthetic

from mlops_local.apigw import proxy_event
from mlops_local.cli import cli

from .conftest import live_model


@pytest.fixture(scope="module")
def scored(platform):
    """One family with a live model; a request explained with top 2 and one not explained, both captured."""
    from .conftest import fast_family

    family = fast_family("audit-tools")
    platform.add_family(family)
    live_model(platform, family)
    records = synthetic.to_instances(synthetic.credit_risk_columns(2, 31), family)
    answers = {}
    for name, extra in (("explained", {"explain": True, "top": 2}), ("plain", {})):
        event = proxy_event("POST", f"/models/{family.name}/predict", json.dumps({"instances": records, **extra}))
        response, _ = platform.invoke_scoring(family.name, event)
        assert response["statusCode"] == 200, response
        answers[name] = json.loads(response["body"])
    platform.flush_captures()
    return {"family": family, **answers}


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_audit_shows_the_reason_codes_returned_to_the_client_not_recomputed_ones(scored, stack):
    body = scored["explained"]
    result = mlops("audit", body["request_id"], "--json", *stack)
    assert result.exit_code == 0, result.output
    explanation = json.loads(result.stdout)["explanation"]
    assert explanation["explained_at_request"] is True and explanation["returned_match"] is True
    returned = [[r["feature"] for r in e["reasons"]] for e in explanation["returned"]]
    assert returned == [[r["feature"] for r in e["reasons"]] for e in body["explanations"]]
    assert all(len(r) == 2 for r in returned), "the client asked for its top 2"

    text = mlops("audit", body["request_id"], *stack)
    assert text.exit_code == 0, text.output
    assert text.stdout.count("reason codes returned to the client") == 2
    assert "same reason codes as were returned to the client" in text.stdout
    # The tables show the returned top 2, not every feature of the recomputation.
    recomputed_only = {r["feature"] for r in explanation["records"][0]["reasons"][2:]}
    table = text.stdout.split("Record 0:", 1)[1].split("Record 1:", 1)[0]
    assert recomputed_only and not any(f"│ {feature} " in table for feature in recomputed_only)


def test_audit_says_when_the_request_was_not_explained(scored, stack):
    result = mlops("audit", scored["plain"]["request_id"], "--json", *stack)
    explanation = json.loads(result.stdout)["explanation"]
    assert explanation["explained_at_request"] is False and explanation["returned"] is None
    assert "did not ask for explanations" in explanation["note"]
    text = mlops("audit", scored["plain"]["request_id"], *stack)
    assert "Not explained at request time" in text.stdout and "reasons recomputed now" in text.stdout


def test_audit_accepts_the_request_id_in_uppercase_and_says_what_it_scanned(scored, stack):
    request_id = scored["explained"]["request_id"]
    result = mlops("audit", request_id.upper(), "--family", scored["family"].name, *stack)
    assert result.exit_code == 0, result.output
    assert request_id in result.stdout
    assert "object(s) scanned by key (Bloom filter)" in result.stderr and "Searched 1 hour partition(s)" in \
        result.stderr


def test_audit_of_an_unknown_family_exits_2_naming_it_and_the_known_ones(scored, stack):
    result = mlops("audit", scored["plain"]["request_id"], "--family", "nope", *stack)
    assert result.exit_code == 2
    assert "model family 'nope' is not registered" in result.stderr and scored["family"].name in result.stderr
    assert "Traceback" not in result.output
