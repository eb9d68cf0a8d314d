"""Developer tools: the local runtime on embedded moto, the demo, and the `mlops` CLI (never shipped to Lambda)."""
