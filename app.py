#!/usr/bin/env python3
"""CDK app: load and validate the platform configuration from the cdk.json context, add the stack, check it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))  # the runtime library's schemas validate config

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import CONTEXT_KEY, ConfigError, load_config  # noqa: E402
from infra.stack import MlopsPlatformStack  # noqa: E402


def build_app(app: cdk.App) -> cdk.App:
    config = load_config(app.node.try_get_context(CONTEXT_KEY))
    MlopsPlatformStack(app, "MlopsPlatform", config=config,
                       description="Serverless MLOps platform: training, ONNX scoring, canary rollouts, drift checks")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    try:
        build_app(cdk.App()).synth()
    except ConfigError as error:
        print(error, file=sys.stderr)
        sys.exit(1)
