"""CDK app entry point: builds the platform stack from the cdk.json context (see infra/)."""
