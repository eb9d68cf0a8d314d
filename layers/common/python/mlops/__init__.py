"""Runtime library of the MLOps platform, shipped to every Lambda function as the common layer."""

__version__ = "0.1.0"
