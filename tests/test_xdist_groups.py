"""The suite's split over two processes holds: tests in one `xdist_group` run on one worker.

tests/conftest.py puts every test that starts servers or clusters in the group "servers" so that two
of them never share the 2 cores. pytest 9.2 with pytest-xdist 3.8 drops the group silently
(pytest-dev/pytest-xdist#1386: the node ids lose their "@group" suffix and the tests spread over both
workers); pyproject pins pytest below 9.2 until a fixed xdist is locked. This runs a tiny suite the
way ./run test does (-n 2 --dist loadgroup) and checks where its grouped tests ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GROUPED = '''
import os, pytest

@pytest.mark.xdist_group("servers")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    with open(os.environ["WHERE"], "a") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
'''


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    where = tmp_path / "workers.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-n", "2",
         "--dist", "loadgroup", str(tmp_path / "test_grouped.py")],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "WHERE": str(where)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers = where.read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, f"the group ran on {sorted(set(workers))}: {done.stdout}"
