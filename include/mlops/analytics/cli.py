"""`mlops compare` and `mlops report`: the analytics commands, reading the shared MLflow store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


def project_configs(settings: Settings) -> dict[str, ProjectConfig]:
    """The valid projects by name (an invalid YAML is `mlops validate`'s business, not a reason to stop)."""
    from mlops.config import load_projects, project_files

    try:
        paths = project_files(settings.projects_dir)
    except OSError:
        return {}
    configs, _errors = load_projects(paths, deep=False)
    return {config.name: config for config in configs.values()}


def _open_store(prog: str) -> tuple[Settings, MlflowClient, dict[str, ProjectConfig]] | None:
    """The settings, an MLflow client on the platform's store and the valid projects; None (said on
    stderr) when the tracking server cannot be reached."""
    from mlflow import MlflowClient

    from mlops.settings import get_settings
    from mlops.tracking.client import TrackingUnavailable, configure

    settings = get_settings()
    try:
        configure(settings)
    except TrackingUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    return settings, MlflowClient(), project_configs(settings)


def compare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlops compare",
        description="Compare a project's (or every project's) training runs by technique and machine, and "
        "name the best technique on each machine under the project's `compare.objective`.",
    )
    parser.add_argument("--project", metavar="NAME", help="one project (default: the whole toolkit)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument(
        "--no-tags", action="store_true", help="do not write the verdicts to the experiments and model versions"
    )
    args = parser.parse_args(argv)

    from mlops.analytics.compare import compare_projects, format_table, write_verdicts

    opened = _open_store("mlops compare")
    if opened is None:
        return 2
    settings, client, configs = opened
    comparisons = compare_projects(client, configs, only=args.project)
    if args.project and not comparisons:
        known = "a project of " + str(settings.projects_dir) if args.project in configs else "no project YAML names it"
        print(f"mlops compare: no finished training runs of {args.project!r} in {settings.tracking_uri} ({known})",
              file=sys.stderr)
        return 1
    if not args.no_tags:
        for comparison in comparisons:
            write_verdicts(client, comparison)
    if args.json:
        print(json.dumps([c.to_dict() for c in comparisons], indent=2, default=str))
    else:
        print(format_table(comparisons))
    return 0


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlops report",
        description="Write the history report: self-contained HTML pages with the quality, techniques, hardware, "
        "serving, drift and failures of every project (toolkit-report.html, with the cross-project views) and "
        "one page per project, into <MLOPS_HOME>/reports.",
    )
    parser.add_argument("--project", metavar="NAME", help="only this project's page (default: the whole toolkit)")
    parser.add_argument("--out", metavar="DIR", help="write the pages here instead")
    parser.add_argument("--no-pools", action="store_true", help="do not read pool usage from Airflow's metadata DB")
    args = parser.parse_args(argv)

    import os
    from pathlib import Path

    from mlops.analytics.report_files import generate_reports

    opened = _open_store("mlops report")
    if opened is None:
        return 2
    settings, client, configs = opened
    if args.project and args.project not in configs and client.get_experiment_by_name(args.project) is None:
        print(f"mlops report: no project {args.project!r}: no YAML in {settings.projects_dir} and no experiment in "
              f"{settings.tracking_uri}", file=sys.stderr)
        return 1
    pools = not args.no_pools and not args.project
    if pools:
        from mlops.airflow_env import airflow_environment

        os.environ.update(airflow_environment(settings))  # before Airflow is imported: its DB is the platform's
    written = generate_reports(settings, client, configs, only=args.project,
                               out_dir=Path(args.out) if args.out else None, pools=pools)
    for path in written.paths:
        print(path)
    timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in written.seconds.items())
    print(f"{len(written.projects)} project page(s){' and the toolkit page' if written.toolkit else ''} ({timing})",
          file=sys.stderr)
    return 0
