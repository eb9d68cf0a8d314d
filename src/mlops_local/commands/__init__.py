"""Command groups of the `mlops` CLI, one module per concern; each exposes `register(cli)`."""
