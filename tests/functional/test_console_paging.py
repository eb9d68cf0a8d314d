"""The console's home page lists families a page at a time (thousands of families: a page reads the family index
once and two items per family shown; fresh-user pass on issue 12, M4)."""

from __future__ import annotations

from types import SimpleNamespace

from mlops.data.synthetic import credit_risk_family

from mlops_local.console import Console


def test_the_home_page_shows_a_page_of_families_and_links_the_next(platform):
    for i in range(Console.PAGE_SIZE + 7):
        platform.registry.put_family(credit_risk_family(name=f"fam-{i:03d}"))
    console = Console(SimpleNamespace(registry=platform.registry, description="test platform",
                                      bucket="b", table="t", state_machine_arn="arn"))
    status, first, _ = console.handle("GET", "/console")
    assert status == 200 and "fam-000" in first and f"fam-{Console.PAGE_SIZE:03d}" not in first
    following = f"?after=fam-{Console.PAGE_SIZE - 2:03d}"  # credit-risk sorts first: 49 fam-* on the first page
    assert following in first
    status, second, _ = console.handle("GET", f"/console/{following}")
    assert status == 200 and f"fam-{Console.PAGE_SIZE + 6:03d}" in second and "fam-000<" not in second
    assert "end of the list" in second and "first page" in second
