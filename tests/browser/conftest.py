"""Browser tests leave a screenshot of every open page when they fail (artifacts_dir("browser")/FAILED-*)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.browser_call_failed = report.failed  # read by the `page` fixture's teardown
