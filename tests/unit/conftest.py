"""The guard that keeps the unit tier pure: no unit test imports MLflow or Evidently (the shared
fixtures are in tests/conftest.py).

It sees what a module's import or a test's run newly imports, so it bites where the tier runs alone
(`make test-unit`); in a whole-suite process the integration modules have imported MLflow already."""

import sys
from collections.abc import Iterator

import pytest

# Each takes seconds to import, and a test that needs a tracking store or a drift report is an
# integration test (tests/integration): the unit tier stays fast by never importing them.
HEAVY_PACKAGES = ("mlflow", "evidently")


def _heavy_loaded() -> set[str]:
    return {name for name in HEAVY_PACKAGES if name in sys.modules}


def _pulled_in_message(node, pulled: set[str]) -> str:
    return (
        f"{node.nodeid} imported {', '.join(sorted(pulled))}: unit tests stay pure (tests/unit/conftest.py); "
        "move a test that needs a tracking store or Evidently to tests/integration, or import less"
    )


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A unit test module whose imports pull in MLflow or Evidently fails to collect, naming them."""
    loaded = _heavy_loaded()
    report = yield
    pulled = _heavy_loaded() - loaded
    if pulled and isinstance(collector, pytest.Module) and report.passed:
        report.outcome = "failed"
        report.longrepr = _pulled_in_message(collector, pulled)
    return report


def _fail_if_it_pulls_in_heavy(item) -> Iterator[None]:
    loaded = _heavy_loaded()
    result = yield
    pulled = _heavy_loaded() - loaded
    if pulled:
        pytest.fail(_pulled_in_message(item, pulled), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """A unit test (or its fixtures) that imports MLflow or Evidently while it runs fails, naming them."""
    return (yield from _fail_if_it_pulls_in_heavy(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _fail_if_it_pulls_in_heavy(item))
