"""`mlops`: the user's handle on the platform. Each subcommand is a thin shell over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mlops.settings import get_settings


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate project YAMLs: every error, with file:line:column, field and a hint; exit 1 on any.

    Any file that cannot be read, decoded or parsed is one located error (never a traceback),
    the others are still checked; exit 2 only for a named path that does not exist at all.
    """
    from mlops.config import ConfigError, load_projects, project_files
    from mlops.config.errors import printable

    for stream in (sys.stdout, sys.stderr):  # a message must never fail to print (e.g. PYTHONIOENCODING=ascii)
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    paths: list[Path] = []
    errors: dict[Path, list[ConfigError]] = {}
    for raw in args.paths or [str(get_settings().projects_dir)]:
        path = Path(raw)
        if path.is_dir():
            try:
                paths.extend(project_files(path))
            except OSError as exc:
                paths.append(path)
                reason = f"cannot list the folder: {exc.strerror or exc}"
                errors[path] = [ConfigError(str(path), None, None, "", reason)]
        elif os.path.lexists(path):  # a broken symlink is a file to report, not a typo
            paths.append(path)
        else:
            print(f"{printable(str(path))}: no such file or directory", file=sys.stderr)
            return 2
    configs, load_errors = load_projects([p for p in paths if p not in errors], deep=not args.no_import)
    errors.update(load_errors)
    if not args.no_hardware:
        _check_machine(configs, errors)
    notes = 0
    for path in paths:
        if path in errors:
            for error in errors[path]:
                print(error.format())
        elif not args.quiet:
            print(f"{printable(str(path))}: ok ({configs[path].dag_id})")
            for note in _environment_notes(path, configs[path]):
                print(note.format())
                notes += 1
    count = sum(len(e) for e in errors.values())
    print(f"{len(paths)} file(s), {len(errors)} invalid, {count} error(s)" + (f", {notes} note(s)" if notes else ""),
          file=sys.stderr)
    return 1 if errors else 0


def _environment_notes(path: Path, config) -> list:
    """What a valid project's environment lock says (it runs isolated, and why; or the lock is stale), as
    located lines that fail nothing. Reads the lock only: no uv, so `--no-import` prints them too."""
    from mlops.config import ConfigError
    from mlops.config.loader import position_of
    from mlops.environments.lock import environment_notes, lock_path

    notes = []
    for note in environment_notes(path, config.environment.requirements):
        loc = ("environment", "requirements") + ((note.index,) if note.index is not None else ())
        line, column = position_of(path, loc)
        message = f"note: {note.message}; locked in {lock_path(path).name}" if note.kind == "conflict" else \
            f"note: {note.message}"
        notes.append(ConfigError(str(path), line, column, ".".join(map(str, loc)), message, note.suggestion))
    return notes


def _check_machine(configs: dict, errors: dict) -> None:
    """Refuse a project whose declared memory this machine's memory pool can never give."""
    from mlops.config import ConfigError
    from mlops.config.loader import position_of
    from mlops.hardware import probe
    from mlops.resources.pools import check_memory_fits

    profile = probe()
    for path, config in list(configs.items()):
        problem = check_memory_fits(config.training.memory_gb, profile)
        if problem:
            line, column = position_of(path, ("training", "memory_gb"))
            errors.setdefault(path, []).append(
                ConfigError(str(path), line, column, "training.memory_gb", problem, "lower it or run on a bigger machine")
            )


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the project JSON Schema (for editor completion) to projects/schema.json."""
    from mlops.config.schema import json_schema

    out = Path(args.output or get_settings().projects_dir / "schema.json")
    out.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    """Every family a project can name, where it comes from, and the projects' own families."""
    from mlops.config import load_projects, project_files
    from mlops.training.families import FamilyError, family_names, find_family, load_family_class, project_code_dir

    settings = get_settings()
    sources = [find_family(name) for name in family_names()]
    configs, _ = load_projects(project_files(settings.projects_dir)) if settings.projects_dir.is_dir() else ({}, {})
    used_by: dict[str, list[str]] = {}
    for config in configs.values():
        used_by.setdefault(config.model.family, []).append(config.name)
        if config.model.family not in family_names():
            sources.append(find_family(config.model.family, project_code_dir(settings, config.name)))
    status = 0
    for source in sources:
        projects = ", ".join(sorted(used_by.get(source.ref, []))) or "-"
        try:
            family = load_family_class(source)()
        except FamilyError as exc:
            print(f"{source.ref:16} from: {source.origin}\n  BROKEN: {exc}")
            status = 1
            continue
        techniques = ", ".join(sorted(family.supported_techniques)) or "-"
        print(
            f"{source.ref:16} from: {source.origin}  metrics: {', '.join(family.metrics)}  techniques: {techniques}"
            f"  projects: {projects}\n  {family.description}"
        )
    return status


def cmd_new_project(args: argparse.Namespace) -> int:
    """Write projects/NAME/ (project.yaml, model.py with its own family, sample data) and say what is next."""
    from mlops.project_template import NewProjectError, create_project, summary

    try:
        created = create_project(args.name, Path(args.dir) if args.dir else get_settings().projects_dir, args.like)
    except NewProjectError as exc:
        print(f"mlops new-project: {exc}", file=sys.stderr)
        return 1
    print(summary(created))
    return 0


def cmd_init_project(args: argparse.Namespace) -> int:
    """Configure DVC for a project now (its data made, tracked and pushed) instead of at first run."""
    from mlops.config import ProjectConfigError, load_project, project_file
    from mlops.data.dvc_workspace import DataError
    from mlops.data.project_data import ensure_project_data

    settings = get_settings()
    path = Path(args.name) if args.name.endswith((".yaml", ".yml")) else project_file(settings.projects_dir, args.name)
    try:
        config = load_project(path)
    except ProjectConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        result = ensure_project_data(
            settings, config.name, config.model.family, config.data.num_samples, config.data.seed,
            config.model.hyperparameters, config.data.version, source=config.data.source, path=config.data.path,
        )
    except DataError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from mlops import services

    settings = get_settings()
    pids = services.up(settings)
    for name, pid in pids.items():
        print(f"{name:14} pid {pid}")
    from mlops.serving.api_keys import ensure_api_key

    passwords = settings.home / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin", "?") if passwords.exists() else "(see the api-server log)"
    print(f"Airflow UI: http://{settings.bind_host}:{settings.airflow_port}  user admin, password {password}")
    print(f"Dashboard:  http://{settings.bind_host}:{settings.airflow_port}/plugin/toolkit  (every project on one page; "
          "the same Airflow login)")
    from mlops.tracking.client import mlflow_credentials

    login = mlflow_credentials(settings)
    print(f"MLflow UI:  http://{settings.bind_host}:{settings.mlflow_port}  user {login.get('MLFLOW_TRACKING_USERNAME')}, "
          f"password {login.get('MLFLOW_TRACKING_PASSWORD')}")
    print(f"Gateway:    http://{settings.bind_host}:{settings.gateway_port}/v1/models  header X-API-Key: "
          f"{ensure_api_key(settings)}")
    from mlops.monitoring.evidently_ui import PASSWORD_SECRET, USER
    from mlops.secrets import ensure_secret

    print(f"Evidently:  http://{settings.bind_host}:{settings.evidently_port}  user {USER}, password "
          f"{ensure_secret(settings, PASSWORD_SECRET)}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from mlops import services

    stopped = services.down(get_settings())
    print("stopped: " + (", ".join(stopped) or "nothing was running"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from mlops import services

    for name, pid in services.status(get_settings()).items():
        print(f"{name:14} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """Run any Airflow command with the platform's environment (AIRFLOW_HOME, state, secrets)."""
    from mlops.airflow_env import airflow_environment

    env = airflow_environment(get_settings())
    binary = str(Path(sys.executable).with_name("airflow"))
    os.execve(binary, [binary, *args.airflow_args], env)


def cmd_serve(argv: list[str]) -> int:
    """Run the model-serving gateway in the foreground (`mlops up` runs it in the background)."""
    from mlops.serving.server import main

    return main(argv)


def cmd_demo(args: argparse.Namespace) -> int:
    from mlops.demo import run_demo

    return run_demo(get_settings(), args.project)


def _airflow_side(module: str):
    """Import an Airflow-side CLI module (the `mlops_airflow` package in plugins/) after giving this
    process the platform's Airflow env."""
    import importlib

    from mlops.airflow_env import airflow_environment, plugins_on_path

    os.environ.update(airflow_environment(get_settings()))  # before Airflow is imported
    plugins_on_path()
    return importlib.import_module(module)


def cmd_queue(argv: list[str]) -> int:
    """What every waiting task waits for (pool slots, thermal state, retry) and its position."""
    return _airflow_side("mlops_airflow.queue_view").main(argv)


def cmd_pools(argv: list[str]) -> int:
    """Size the mlx pools from the hardware and thermal state (`sync`), or show them."""
    return _airflow_side("mlops_airflow.pools_cli").main(argv)


def cmd_worker(args: argparse.Namespace) -> int:
    """Start an Airflow Celery worker that serves the queues this machine's probe qualifies it for
    (and, with --node, a federated node's client queue)."""
    import importlib.util
    import re

    from mlops.airflow_env import airflow_environment
    from mlops.config.schema import NODE_PATTERN
    from mlops.hardware import probe
    from mlops.resources.names import worker_queues

    if args.node_only and not args.node:
        print("--node-only needs --node NAME", file=sys.stderr)
        return 2
    if args.node and not re.fullmatch(NODE_PATTERN, args.node):
        print(f"--node {args.node!r}: a federated node name is lowercase letters, digits and _ (as in the YAML's "
              "federated.nodes)", file=sys.stderr)
        return 2
    # A federated node also serves its clients' queue (`node_<NAME>`) under its own name; --node-only:
    # that queue alone, for a Mac that only lends itself to federated rounds.
    queues = [] if args.node_only else worker_queues(probe())
    if args.node:
        queues.append(f"node_{args.node}")
    argv = [str(Path(sys.executable).with_name("airflow")), "celery", "worker", "--queues", ",".join(queues),
            "--concurrency", str(args.concurrency)]
    if args.node:
        argv += ["--celery-hostname", f"{args.node}@%h"]  # Celery expands %h: `mac_a@<host>` in Flower, `celery inspect`
    if not args.serve_logs:  # Airflow's worker log server binds every interface (0.0.0.0:8793)
        argv.append("--skip-serve-logs")
    print(f"queues for this machine: {', '.join(queues)}")
    if args.dry_run:
        print(" ".join(argv))
        return 0
    if importlib.util.find_spec("airflow.providers.celery") is None:
        print("the Celery executor is not installed: `uv sync --extra celery`, then set AIRFLOW__CORE__EXECUTOR="
              "CeleryExecutor and a broker (see README, Scaling out)", file=sys.stderr)
        return 2
    os.execve(argv[0], argv, airflow_environment(get_settings()))


def cmd_hardware(argv: list[str]) -> int:
    from mlops.hardware.cli import main

    return main(argv)


def cmd_envs(args: argparse.Namespace) -> int:
    """The isolated environments of projects whose requirements conflict with the shared layer."""
    from mlops.environments.cli_support import run

    return run(get_settings(), args)


def build_parser() -> argparse.ArgumentParser:
    from mlops.resources.names import WORKER_CONCURRENCY

    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate project YAMLs")
    p.add_argument("paths", nargs="*", help="files or folders (default: projects/)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("--no-hardware", action="store_true", help="skip the checks against this machine (memory)")
    p.add_argument(
        "--no-import", action="store_true",
        help="do not import families from packages or project code, nor resolve environment.requirements with uv "
        "(the checks DAG parsing makes)",
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("schema", help="export the project JSON Schema")
    p.add_argument("--output")
    p.set_defaults(func=cmd_schema)
    sub.add_parser("families", help="list the model families").set_defaults(func=cmd_families)
    p = sub.add_parser("new-project", help="create projects/NAME/: project.yaml, model.py (its own family), sample data")
    p.add_argument("name", help="project name: lowercase letters, digits and _")
    p.add_argument("--like", default="mlp_classifier", help="built-in family the new one resembles (default mlp_classifier)")
    p.add_argument("--dir", help="projects folder (default: MLOPS_PROJECTS_DIR, else projects/)")
    p.set_defaults(func=cmd_new_project)
    p = sub.add_parser("init-project", help="set up a project's DVC data now")
    p.add_argument("name", help="project name (projects/NAME.yaml or projects/NAME/project.yaml) or a YAML path")
    p.set_defaults(func=cmd_init_project)
    sub.add_parser("hardware", help="print the hardware probe (see `mlops hardware -h`)", add_help=False)
    sub.add_parser("serve", help="run the model-serving gateway (see `mlops serve -h`)", add_help=False)
    sub.add_parser("evidently-ui", help="Evidently's UI over the drift reports, behind a login", add_help=False)
    sub.add_parser("pools", help="size the mlx pools from the hardware (see `mlops pools -h`)", add_help=False)
    sub.add_parser("queue", help="what each waiting task waits for (see `mlops queue -h`)", add_help=False)
    sub.add_parser("compare", help="best technique per project and machine (see `mlops compare -h`)", add_help=False)
    sub.add_parser("report", help="HTML history report of every project (see `mlops report -h`)", add_help=False)
    sub.add_parser("up", help="start Airflow, MLflow, Ray, the gateway and Evidently's UI on 127.0.0.1").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="which services run").set_defaults(func=cmd_status)
    p = sub.add_parser("worker", help="start a Celery worker on the queues this machine's hardware serves")
    p.add_argument("--dry-run", action="store_true", help="print the queues and the command only")
    p.add_argument("--concurrency", type=int, default=WORKER_CONCURRENCY,
                   help=f"tasks the worker runs at once (default {WORKER_CONCURRENCY}: ML tasks are heavy)")
    p.add_argument("--serve-logs", action="store_true", help="run Airflow's worker log server (listens on all interfaces)")
    p.add_argument("--node", metavar="NAME",
                   help="also serve federated node NAME's client tasks (queue node_NAME); the worker is named NAME@host")
    p.add_argument("--node-only", action="store_true", help="with --node: serve node_NAME only (no hardware queues)")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("airflow", help="run an Airflow command with the platform's environment")
    p.add_argument("airflow_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_airflow)
    p = sub.add_parser("demo", help="run one project's full lifecycle and print a summary")
    p.add_argument("project", nargs="?", default="quantized_optimization")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("envs", help="isolated project environments: list, build, prune")
    envs = p.add_subparsers(dest="envs_command", required=True)
    envs.add_parser("list", help="environments on disk: key, projects using it, size, build time")
    e = envs.add_parser("build", help="build the missing environments of the projects, or of pinned lists")
    e.add_argument("--requirements", action="append", type=Path, metavar="FILE", help="a pinned requirements file (repeatable)")
    e = envs.add_parser("prune", help="remove the environments no project uses")
    e.add_argument("--keep", action="append", metavar="KEY", help="also keep this environment (repeatable)")
    e.add_argument("--dry-run", action="store_true", help="only name what would be removed")
    p.set_defaults(func=cmd_envs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mlops import telemetry
    from mlops.settings import SettingsError

    telemetry.apply(os.environ)  # `mlops serve`, `mlops evidently-ui`... started by hand phone home neither
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:  # a bad MLOPS_* variable: say which, no traceback
        print(f"mlops: {exc}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["hardware"]:
        return cmd_hardware(argv[1:])
    if argv[:1] == ["queue"]:
        return cmd_queue(argv[1:])
    if argv[:1] == ["pools"]:
        return cmd_pools(argv[1:])
    if argv[:1] == ["compare"]:
        from mlops.analytics.cli import compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["report"]:
        from mlops.analytics.cli import report_main

        return report_main(argv[1:])
    if argv[:1] == ["serve"]:
        return cmd_serve(argv[1:])
    if argv[:1] == ["evidently-ui"]:
        from mlops.monitoring.evidently_ui import main as evidently_ui

        return evidently_ui(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
