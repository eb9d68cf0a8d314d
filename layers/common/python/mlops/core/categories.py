"""The one normalisation of categorical values, shared by training, scoring, capture and drift statistics."""

from __future__ import annotations


def category_text(value: str) -> str:
    """A categorical value (text) as every path compares it with the declared categories: surrounding whitespace
    removed, as the data set reader trims each cell (the ISLR Wage file's " Male" is the category "Male"). Training
    (mlops.data.datasets), scoring (mlops.serving.scoring, both tiers) and the drift statistics of captured inputs
    (mlops.monitoring.drift) all call this function, so a value means the same category everywhere."""
    return value.strip()


def category_code(value: str, index: dict[str, float]) -> float | None:
    """The code of a text value among a feature's declared categories (`index`: category -> code), looked up as
    sent and, failing that, after `category_text`; None when it is not a declared category."""
    code = index.get(value)
    return code if code is not None else index.get(category_text(value))
