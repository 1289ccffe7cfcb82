"""Parse time of dags/ with N project YAMLs against the floor: the same DAGs written by hand.

Projects: the shipped projects/*.yaml, cycled and renamed (`<name>_0000`, ...), so N=9 is the
shipped set and larger N keep its mix (1 in 9 with serving and monitoring, 1 in 9 federated: 11 DAGs
and 93 tasks per 9 projects, plus toolkit__report once).

Ours: Airflow's DagBag parses dags/ (project_lifecycles.py + project_errors.py) with
MLOPS_PROJECTS_DIR pointing at the N YAMLs: YAML load + pydantic validation + family checks,
then the factory's DAGs.

The floor is what Airflow needs anyway for the same DAGs: one small hand-written .py file per
project, with no YAML and no validation, defining exactly the DAGs and tasks the platform
generates for that project (`<name>__lifecycle`, 7 tasks, or with `federated:` partition_data,
start_federation, a TaskGroup `round_<r>` per round holding `train_<client>` per client (time
limit, node queues) and `aggregate`, publish_model and participation: 30 tasks for the shipped
4 rounds x 4 clients; `__deploy`, 1 task, and `__monitor`, 6 tasks, where the YAML enables
serving / monitoring), and the toolkit's `toolkit__report` (1 task) once, with the same features:
dag/task ids, schedules (asset, asset-or-time, cron/preset), params, default_args (retries,
backoff, priority, weight rule), tags, doc_md texts, pools/slots/queues, trigger rules,
execution_timeout, TaskGroups, XComArg inputs (`.output`), asset outlets, a sensor for the
thermal gate, failure callbacks.
Its operators are minimal BaseOperator / BaseSensorOperator subclasses in one shared module (as
a hand-written deployment would keep them), not ours. The run asserts that both sides hold the
same DAG ids, and in each the same task ids with the same upstream tasks (explicit and XCom
inputs), pool, pool slots, queue, trigger rule, execution_timeout, TaskGroup, retries and outlets
(collected once per size in the untimed warm-up parse).

How each side is parsed: DagBag in a fresh interpreter that has imported Airflow and then
`gc.freeze()`s its heap, as the dag-processor's manager does before it forks a process per DAG
file (without the freeze, one full collection of Airflow's ~200k objects, 0.1-0.2 s, lands in
whichever side happens to cross the threshold). Airflow's own import is measured separately
and excluded from both. Bytecode is under the bench's control (PYTHONPYCACHEPREFIX in a temporary
folder, whatever __pycache__ folders the tree holds):

* warm: every module and DAG file from .pyc (a dag-processor re-parsing with bytecode caching on);
* cold: Airflow and the libraries from .pyc, this repository's modules and the DAG files (ours
  and the floor's) compiled from source (PYTHONDONTWRITEBYTECODE=1, as this shell sets it).

Wall seconds and the process's CPU seconds (less sensitive to other work on the machine); with
--repeat R, the best of R runs of each (other work only ever adds), sides and modes alternating.

    .venv/bin/python bench/parse_dags.py [N ...] [--repeat R]   (default: 9 100 500; best of R runs, default 1)
    .venv/bin/python bench/parse_dags.py --smoke                  (tests: the 9 shipped projects, one run)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))  # mlops_airflow

MEASURE = textwrap.dedent(
    """
    import gc, json, sys, time
    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    import airflow.sdk
    gc.freeze()  # as the dag-processor's manager does before it forks a process per DAG file
    t1, c1 = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=sys.argv[1])
    t2, c2 = time.perf_counter(), time.process_time()
    assert not bag.import_errors, bag.import_errors

    def task(t):  # what both sides must agree on, per task (untimed)
        return [t.task_id, sorted(t.upstream_task_ids), t.pool, t.pool_slots, t.queue, str(t.trigger_rule),
                t.execution_timeout and t.execution_timeout.total_seconds(), t.task_group and t.task_group.group_id,
                t.retries, sorted(a.name for a in t.outlets)]

    print(json.dumps({"import_s": t1 - t0, "parse_s": t2 - t1, "cpu_s": c2 - c1,
                      "shape": {d: len(bag.dags[d].tasks) for d in sorted(bag.dag_ids)},
                      "structure": {d: sorted(task(t) for t in bag.dags[d].tasks) for d in sorted(bag.dag_ids)}
                                   if "--structure" in sys.argv else None}))
    """
)

# The floor's operators: what a hand-written deployment keeps in one module its DAG files import.
FLOOR_OPS = textwrap.dedent(
    '''
    """Minimal operators of the hand-written floor (bench/parse_dags.py)."""
    from airflow.sdk import BaseOperator, BaseSensorOperator


    def on_failure(context):
        return None


    class Step(BaseOperator):
        template_fields = ("inputs",)

        def __init__(self, *, inputs=None, **kwargs):
            kwargs.setdefault("on_failure_callback", on_failure)
            kwargs.setdefault("on_retry_callback", on_failure)
            super().__init__(**kwargs)
            self.inputs = inputs

        def execute(self, context):
            return None


    class Gate(BaseSensorOperator):
        template_fields = ("threshold",)

        def __init__(self, *, threshold, **kwargs):
            super().__init__(**kwargs)
            self.threshold = threshold

        def poke(self, context):
            return True
    '''
)


def _schedule_source(config) -> tuple[str, str]:
    """(lifecycle schedule expression, monitor schedule expression) as hand-written source."""
    if not config.monitoring.enabled:
        lifecycle = repr(config.schedule)
    elif config.schedule in (None, "@once", "@continuous"):
        lifecycle = "[RETRAIN]"
    else:
        lifecycle = (
            f"AssetOrTimeSchedule(timetable=CronTriggerTimetable({config.schedule!r}, timezone='UTC'), assets=[RETRAIN])"
        )
    return lifecycle, repr(config.monitoring.schedule)


def federated_source(config, place) -> str:
    """A federated lifecycle's `train` part, by hand: partition_data, start_federation, TaskGroups
    `round_<r>` (`train_<client>` each + `aggregate`), publish_model (named `train` below, as its
    result stands for train's) and participation, wired and placed as the factory's `_federated_rounds`."""
    from mlops.federated.plan import client_names, client_queue

    f = config.federated
    clients = client_names(config)
    queues = {c: client_queue(config, c) for c in clients}
    client_place, queues_line = place("train_client"), ""
    if any(queues.values()):  # nodes: each client on its node's queue (the plan gives them no pool)
        client_place += ", queue=QUEUES[client]"
        queues_line = f"    QUEUES = {queues!r}\n"
    return f'''\
    partition_data = Step(task_id="partition_data", inputs=pull_data.output, {place("partition_data")})
    start_federation = Step(task_id="start_federation", inputs=[pull_data.output, partition_data.output],
                            {place("start_federation")})
    pull_data >> partition_data >> thermal_gate >> start_federation
    CLIENTS = {clients!r}
{queues_line}\
    clients, previous = [], start_federation
    for r in range(1, {f.rounds + 1}):
        with TaskGroup(f"round_{{r}}", tooltip=f"Round {{r}} of {f.rounds}: clients, then FedAvg"):
            for client in CLIENTS:
                clients.append(Step(task_id=f"train_{{client}}", inputs=[start_federation.output, partition_data.output, client, r],
                                    execution_timeout=timedelta(seconds={f.round_timeout_s!r}), {client_place}))
                previous >> clients[-1]
            aggregate = Step(task_id="aggregate", inputs=[start_federation.output, pull_data.output, r], {place("aggregate")})
            previous >> aggregate
        previous = aggregate
    train = Step(task_id="publish_model", inputs=[start_federation.output, pull_data.output], {place("publish_model")})
    previous >> train
    clients >> Step(task_id="participation", inputs=start_federation.output, {place("participation")})
'''


def floor_source(config, source: Path) -> str:
    """One project's DAGs, written out by hand (literals only; the plans only supply the doc texts)."""
    from mlops.lifecycle import deploy_plan, lifecycle_plan, model_asset_uri, monitor_plan, retrain_asset_uri
    from mlops_airflow.dag_factory import _doc_md

    name = config.name
    steps = {s.name: s for s in lifecycle_plan(config)}

    def place(step) -> str:
        s = steps[step]
        out = f"doc_md={s.doc!r}"
        if s.trigger_rule != "all_success":
            out += f", trigger_rule={s.trigger_rule!r}"
        if s.pool:
            out += f", pool={s.pool!r}, pool_slots={s.pool_slots}"
        if s.queue:
            out += f", queue={s.queue!r}"
        return out

    lifecycle_schedule, monitor_schedule = _schedule_source(config)
    sch = config.scheduling
    if config.federated is None:
        training = f'''\
    train = Step(task_id="train", inputs=pull_data.output, {place("train")})
    pull_data >> thermal_gate >> train
'''
    else:
        training = federated_source(config, place)
    text = f'''\
"""Hand-written DAGs of {name} (floor for bench/parse_dags.py)."""
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param{", TaskGroup" if config.federated else ""}

from floor_ops import Gate, Step

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFAULT_ARGS = {{
    "owner": {config.owner!r}, "retries": {config.retries}, "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=10),
    "priority_weight": {config.priority}, "weight_rule": "mlops_airflow.fair_share.FairShareWeight",
}}
MODEL = Asset(name="{name}__model", uri={model_asset_uri(name)!r})
RETRAIN = Asset(name="{name}__retrain", uri={retrain_asset_uri(name)!r})

with DAG(
    dag_id="{name}__lifecycle", description={(config.description or f"Lifecycle of {name}")[:200]!r},
    schedule={lifecycle_schedule}, start_date=START, catchup=False, max_active_runs=1,
    is_paused_upon_creation={config.paused}, tags={[name, "mlops", *config.tags]!r}, doc_md={_doc_md(config, source)!r}, default_args=DEFAULT_ARGS,
    params={{"data_version": Param({config.data.version!r}, type=["null", "string"], description="DVC data version.")}},
) as lifecycle:
    pull_data = Step(task_id="pull_data", inputs="{{{{ params.data_version or '' }}}}", {place("pull_data")})
    thermal_gate = Gate(task_id="thermal_gate", threshold={sch.thermal_threshold!r}, poke_interval={sch.thermal_poll_seconds},
                        timeout={sch.thermal_timeout_seconds}, doc_md={steps["thermal_gate"].doc!r})
{training}\
    evaluate = Step(task_id="evaluate", inputs=[pull_data.output, train.output], {place("evaluate")})
    register = Step(task_id="register", inputs=[train.output, evaluate.output], {place("register")})
    build = Step(task_id="build", inputs=register.output, outlets=[MODEL], {place("build")})
    version_artifacts = Step(task_id="version_artifacts", inputs=train.output, {place("version_artifacts")})
    train >> evaluate >> register >> build >> version_artifacts
'''
    if config.serving.enabled:
        (step,) = deploy_plan(config)
        text += f'''
with DAG(
    dag_id="{name}__deploy", description="Deploy {name}'s new model versions with zero downtime", schedule=[MODEL],
    start_date=START, catchup=False, max_active_runs=1, tags={[name, "mlops", "deploy", *config.tags]!r},
    is_paused_upon_creation={config.paused}, default_args=DEFAULT_ARGS,
    doc_md={f"# {name}: deploy{chr(10)}{chr(10)}Defined in `{source}`.{chr(10)}{chr(10)}1. **deploy**: {step.doc}"!r},
    params={{"version": Param(None, type=["null", "integer"], description="Model version to deploy.")}},
) as deploy:
    Step(task_id="deploy", inputs="{{{{ params.version if params.version is not none else '' }}}}", doc_md={step.doc!r})
'''
    if config.monitoring.enabled:
        m = {s.name: s.doc for s in monitor_plan(config)}
        monitor_doc = "\n".join(f"{i}. **{k}**: {v}" for i, (k, v) in enumerate(m.items(), 1))
        text += f'''
with DAG(
    dag_id="{name}__monitor", description="Monitor {name}: drift, accuracy, serving performance",
    schedule={monitor_schedule}, start_date=START, catchup=False, max_active_runs=1,
    tags={[name, "mlops", "monitor", *config.tags]!r}, is_paused_upon_creation={config.paused}, default_args=DEFAULT_ARGS,
    doc_md={f"# {name}: monitor{chr(10)}{chr(10)}Defined in `{source}`.{chr(10)}{chr(10)}" + monitor_doc!r},
) as monitor:
    drift = Step(task_id="check_drift", doc_md={m["check_drift"]!r})
    accuracy = Step(task_id="check_accuracy", doc_md={m["check_accuracy"]!r})
    performance = Step(task_id="check_performance", doc_md={m["check_performance"]!r})
    report = Step(task_id="report", inputs=[drift.output, accuracy.output, performance.output], doc_md={m["report"]!r})
    Step(task_id="request_retrain", inputs=report.output, outlets=[RETRAIN], doc_md={m["request_retrain"]!r})
    Step(task_id="alert", inputs=report.output, retries={config.monitoring.alert_retries}, doc_md={m["alert"]!r})
'''
    return text


def measure(dag_folder: Path, env: dict[str, str], structure: bool = False) -> dict:
    """One DagBag parse of `dag_folder` in a fresh interpreter; with `structure`, also every task's
    ids, upstream ids (XCom inputs included), pool, slots, queue, trigger rule, time limit, TaskGroup,
    retries and outlets, collected after the timed parse."""
    argv = [str(dag_folder), *(["--structure"] if structure else [])]
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# The toolkit-wide report DAG (dags/toolkit_report.py), written by hand the same way.
TOOLKIT_FLOOR = textwrap.dedent(
    '''
    """Hand-written toolkit__report DAG (floor for bench/parse_dags.py)."""
    from datetime import datetime, timedelta, timezone

    from airflow.sdk import DAG
    from floor_ops import Step

    with DAG(dag_id="toolkit__report", schedule="@daily", start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
             catchup=False, max_active_runs=1, tags=["mlops", "toolkit", "report"], is_paused_upon_creation=False,
             default_args={"owner": "platform", "retries": 1, "retry_delay": timedelta(minutes=5)}):
        Step(task_id="report")
    '''
)


def check_same(ours: dict, floor: dict) -> None:
    """The floor must hold the same DAGs, and in each the same tasks with the same wiring and placement."""
    if ours == floor:
        return
    lines = [f"DAGs only in ours: {sorted(set(ours) - set(floor))}, only in the floor: {sorted(set(floor) - set(ours))}"]
    for dag_id in sorted(set(ours) & set(floor)):
        a, b = ({t[0]: t for t in side[dag_id]} for side in (ours, floor))
        for task_id in sorted(set(a) | set(b)):
            if a.get(task_id) != b.get(task_id):
                lines.append(f"{dag_id}: ours {a.get(task_id)} != floor {b.get(task_id)}")
    raise SystemExit("the floor differs from our DAGs (task_id, upstream, pool, slots, queue, trigger rule, "
                     "execution_timeout, group, retries, outlets):\n" + "\n".join(lines[:40]))


def write_projects(n: int, projects: Path, floor: Path) -> None:
    from mlops.config import load_project

    (floor / "toolkit_report.py").write_text(TOOLKIT_FLOOR)

    shipped = sorted((REPO / "projects").glob("*.yaml"))
    for i in range(n):
        template = shipped[i % len(shipped)]
        name = f"{load_project(template).name}_{i:04d}"
        path = projects / f"{name}.yaml"
        path.write_text(re.sub(r"^name: .*$", f"name: {name}", template.read_text(), count=1, flags=re.M))
        (floor / f"{name}.py").write_text(floor_source(load_project(path), path))


def cold_copy(warm: Path, cold: Path, tmp: Path) -> None:
    """`warm`'s .pyc files without those of this repository's code and of the DAG files (all in `tmp`)."""
    shutil.rmtree(cold, ignore_errors=True)
    shutil.copytree(warm, cold, copy_function=os.link)
    shutil.rmtree(cold / tmp.relative_to(tmp.anchor), ignore_errors=True)
    repo = cold / REPO.relative_to(REPO.anchor)
    for child in repo.iterdir() if repo.is_dir() else ():
        if child.name != ".venv":
            shutil.rmtree(child)


def main(counts: list[int], repeat: int = 1) -> None:
    from mlops.airflow_env import airflow_environment
    from mlops.settings import Settings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = airflow_environment(Settings.from_env({"MLOPS_HOME": str(tmp / "state")}))
        # This tree's code (not another checkout's) and the floor's operators.
        env.update(MLOPS_HOME=str(tmp / "state"), PYTHONPATH=os.pathsep.join(map(str, (REPO, REPO / "include", REPO / "plugins", tmp / "floor_lib"))))
        (tmp / "floor_lib").mkdir()
        (tmp / "floor_lib" / "floor_ops.py").write_text(FLOOR_OPS)
        warm, cold = tmp / "pyc-warm", tmp / "pyc-cold"
        for n in counts:
            projects, floor = tmp / f"projects{n}", tmp / f"floor{n}"
            projects.mkdir()
            floor.mkdir()
            write_projects(n, projects, floor)
            env["MLOPS_PROJECTS_DIR"] = str(projects)
            # Bytecode under our control (not whatever __pycache__ folders the tree holds): one untimed
            # parse of each side writes every .pyc into `warm`; `cold` drops ours and the DAG files'.
            warm_up = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            ours_dags, floor_dags = (
                measure(folder, {**warm_up, "PYTHONPYCACHEPREFIX": str(warm)}, structure=True)["structure"]
                for folder in (REPO / "dags", floor)
            )
            check_same(ours_dags, floor_dags)
            cold_copy(warm, cold, tmp)
            runs: dict[tuple[str, str], list[dict]] = {}
            for _ in range(repeat):  # alternate, so drift in the machine's load hits both sides
                for mode, prefix in (("cold", cold), ("warm", warm)):
                    for side, folder in (("ours", REPO / "dags"), ("floor", floor)):
                        run_env = {**env, "PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}
                        runs.setdefault((mode, side), []).append(measure(folder, run_env))
            shape = runs["cold", "ours"][0]["shape"]
            assert all(r["shape"] == shape for rs in runs.values() for r in rs), "the floor must hold the same DAGs and tasks"
            for mode in ("cold", "warm"):
                best = {f"{side}_{k}": min(r[k] for r in runs[mode, side])
                        for side in ("ours", "floor") for k in ("parse_s", "cpu_s", "import_s")}
                rows.append({"n": n, "mode": mode, "dags": len(shape), "tasks": sum(shape.values()), **best})
    print(
        f"{'projects':>8} {'dags':>5} {'tasks':>6} {'bytecode':>8} {'ours (s)':>9} {'floor (s)':>9} {'ratio':>6}"
        f" {'ours cpu (s)':>12} {'floor cpu (s)':>13} {'cpu ratio':>9} {'ms/project':>10} {'floor ms/proj':>13}"
        f" {'airflow import (s)':>18}"
    )
    for r in rows:
        print(
            f"{r['n']:>8} {r['dags']:>5} {r['tasks']:>6} {r['mode']:>8} {r['ours_parse_s']:>9.3f} {r['floor_parse_s']:>9.3f}"
            f" {r['ours_parse_s'] / r['floor_parse_s']:>6.2f} {r['ours_cpu_s']:>12.3f} {r['floor_cpu_s']:>13.3f}"
            f" {r['ours_cpu_s'] / r['floor_cpu_s']:>9.2f} {1000 * r['ours_parse_s'] / r['n']:>10.1f}"
            f" {1000 * r['floor_parse_s'] / r['n']:>13.1f} {r['ours_import_s']:>18.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, help="numbers of projects (default 9 100 500)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per side, size and mode; the table shows the best (other work on the machine only adds)")
    parser.add_argument("--smoke", action="store_true", help="the 9 shipped projects, one run: checks the bench still works")
    args = parser.parse_args()
    if args.smoke:
        main([9], 1)
    else:
        main(args.counts or [9, 100, 500], args.repeat)
