"""CDK constructs of the platform: one module per concern, wired by infra/stack.py."""
