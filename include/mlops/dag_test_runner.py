"""`airflow dags test` for a person: one line per task as it ends, Airflow's own output in a log file.

`airflow dags test` prints every task's log to the terminal: thousands of lines that bury what a
person wants to know (which step ran, how long it took, what it gave, and why one failed). This
runs it with its output sent to a log file, follows the run's task instances in the metadata DB
while it goes, and prints each step's state, time and a short result when it ends; a failed step
gets the error its task raised and the log's path.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENDED = ("success", "failed", "skipped", "upstream_failed", "removed")
_SHOWN_KEYS = 3  # keys of a task's return value shown on its line
_RESULT_CHARS = 80  # a line stays readable in a terminal


@dataclass
class StepResult:
    task_id: str
    state: str
    seconds: float | None
    result: str = ""

    def line(self, width: int = 18) -> str:
        took = f"{self.seconds:6.1f} s" if self.seconds is not None else "      -"
        return f"  {self.task_id:<{width}} {self.state:<15} {took}  {self.result}".rstrip()


@dataclass
class DagTestRun:
    dag_id: str
    returncode: int
    log: Path
    seconds: float
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and all(s.state in ("success", "skipped") for s in self.steps)

    def failed_steps(self) -> list[StepResult]:
        return [s for s in self.steps if s.state == "failed"]


def _engine(env: dict[str, str]):
    """The metadata DB the command writes to, as Airflow reads it from its environment and config."""
    import sqlalchemy

    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not url:
        home = Path(env["MLOPS_HOME"])
        url = f"sqlite:///{home / 'airflow' / 'airflow.db'}"
    return sqlalchemy.create_engine(url)


def _short(value: Any) -> str:
    """A task's return value in a few words: its first scalar fields, or its type and size."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(item, (str, int, float, bool)) or item is None:
                text = f"{item:.4g}" if isinstance(item, float) else str(item)
                parts.append(f"{key}={text[:40]}")
            if len(parts) == _SHOWN_KEYS:
                break
        text = ", ".join(parts)
    elif isinstance(value, (str, int, float, bool)):
        text = str(value)
    else:
        return ""
    return text if len(text) <= _RESULT_CHARS else text[: _RESULT_CHARS - 3] + "..."


class _RunWatcher:
    """Reads the newest run of one DAG (started after `after_id`) and its task instances."""

    def __init__(self, env: dict[str, str], dag_id: str):
        import sqlalchemy

        self._text = sqlalchemy.text
        self.engine = _engine(env)
        self.dag_id = dag_id
        self.after_id = self._scalar("select max(id) from dag_run where dag_id = :d") or 0
        self.run_id: str | None = None

    def _scalar(self, sql: str, **params: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(self._text(sql), {"d": self.dag_id, **params}).scalar()
        except Exception:  # the DB may be locked or not migrated yet: nothing to show this time
            return None

    def ended_steps(self) -> list[StepResult]:
        if self.run_id is None:
            self.run_id = self._scalar("select run_id from dag_run where dag_id = :d and id > :a order by id desc",
                                       a=self.after_id)
            if self.run_id is None:
                return []
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(self._text(
                    "select task_id, state, start_date, end_date from task_instance "
                    "where dag_id = :d and run_id = :r order by end_date"
                ), {"d": self.dag_id, "r": self.run_id}).fetchall()
                xcoms = dict(conn.execute(self._text(
                    "select task_id, value from xcom where dag_id = :d and run_id = :r and key = 'return_value'"
                ), {"d": self.dag_id, "r": self.run_id}).fetchall())
        except Exception:
            return []
        steps = []
        for task_id, state, start, end in rows:
            if state not in ENDED:
                continue
            seconds = (_as_time(end) - _as_time(start)).total_seconds() if start and end else None
            steps.append(StepResult(task_id, state, seconds, _short(_decode(xcoms.get(task_id)))))
        return steps


def _as_time(value: Any):
    from datetime import datetime

    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _decode(value: Any) -> Any:
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def run_dag_test(
    airflow: str,
    dag_id: str,
    env: dict[str, str],
    log: Path,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 0.5,
) -> DagTestRun:
    """Run `airflow dags test DAG_ID`, its output appended to `log`; `echo` a line per task as it ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    watcher = _RunWatcher(env, dag_id)
    shown: set[str] = set()
    width = 18
    start = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n===== airflow dags test {dag_id} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        out.flush()
        proc = subprocess.Popen([airflow, "dags", "test", dag_id], env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            finished = proc.poll() is not None
            for step in watcher.ended_steps():
                if step.task_id not in shown:
                    shown.add(step.task_id)
                    echo(step.line(width))
            if finished:
                break
            time.sleep(poll_seconds)
    run = DagTestRun(dag_id, proc.returncode, log, time.monotonic() - start, watcher.ended_steps())
    for step in run.steps:  # a task that ended in the last instant
        if step.task_id not in shown:
            echo(step.line(width))
    return run


_TRACEBACK = "Traceback (most recent call last)"
_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)\b.*)$")


def error_excerpt(log: Path, max_lines: int = 12) -> str:
    """The last error the log holds: the exception line of its last traceback, with the frames before it."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(lines) if _TRACEBACK in line]
    if not starts:
        errors = [line for line in lines if " ERROR " in line or line.startswith("ERROR")]
        return "\n".join(errors[-3:])
    block = lines[starts[-1]:]
    end = next((i for i, line in enumerate(block) if i and _ERROR_LINE.match(line)), min(len(block), 40) - 1)
    block = block[: end + 1]
    if len(block) > max_lines:
        block = [block[0], "  ...", *block[-(max_lines - 2):]]
    return "\n".join(block)
