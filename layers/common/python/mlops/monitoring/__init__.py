"""Scheduled monitoring of live models: input and prediction drift."""
