"""One synthesized template for the session, built from the cdk.json context exactly as `cdk synth` does."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


SHARED_SEED = "loan-default"


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """The cdk.json context, with both tiers in it: its seed family declared dedicated (its own function, alias and
    routes) and a second seed family, `loan-default`, on the shared tier."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    mlops = context["mlops"]
    dedicated = {**mlops["families"][0], "serving": "dedicated"}
    mlops["families"] = [dedicated, {**mlops["families"][0], "name": SHARED_SEED, "serving": "shared"},
                         *mlops["families"][1:]]
    context.update(overrides)
    return context


@dataclass
class Synthesized:
    template: dict[str, Any]
    assertions: Any
    outdir: Path
    manifest: dict[str, Any]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build_app

    app = build_app(cdk.App(context=context, outdir=str(outdir)))
    assembly = app.synth()
    template = assembly.get_stack_by_name("MlopsPlatform").template
    manifest = json.loads((outdir / "MlopsPlatform.assets.json").read_text())
    return Synthesized(template, Template.from_json(template), outdir, manifest)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), cdk_context())


@pytest.fixture(scope="session")
def synth_bucket(synthesized: Synthesized) -> dict[str, Any]:
    """The artifact bucket (the KMS-encrypted one; the other bucket holds its access logs)."""
    for bucket in synthesized.resources("AWS::S3::Bucket").values():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        if rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms":
            return bucket
    raise AssertionError("no KMS-encrypted bucket in the template")
