"""`mlops pools sync|show`: size the MLX pools from this machine now, or show them.

    mlops pools sync [--json]   probe the machine, read the thermal state, write both pools
    mlops pools show [--json]   the pools in Airflow's DB with their current use

The scheduler does the same sync by itself (plugin listener: at start and at every DAG run
start); this is for a first setup, after changing the machine, or to look.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mlops.resources.names import COMPUTE_POOL, MEMORY_POOL


def _airflow_env() -> None:
    """The platform's Airflow environment (AIRFLOW_HOME, state DB) before Airflow is imported."""
    if "airflow" in sys.modules:
        return
    from mlops.airflow_env import airflow_environment
    from mlops.settings import get_settings

    os.environ.update(airflow_environment(get_settings()))


def cmd_sync(args: argparse.Namespace) -> int:
    _airflow_env()
    from mlops.hardware import probe
    from mlops_airflow.pools import current_thermal, plan_now, write_pools

    profile = probe()
    thermal = current_thermal()
    plan, state = plan_now(profile, thermal)
    write_pools(plan)
    if args.json:
        print(json.dumps({"thermal": {"state": state, "detail": thermal.detail, "source": thermal.source},
                          "pools": [p.to_dict() for p in plan.values()]}, indent=2))
        return 0
    print(f"thermal state: {state} ({thermal.detail})")
    for pool in plan.values():
        print(f"{pool.name:12} {pool.slots:4} slots  {pool.description}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _airflow_env()
    from mlops_airflow.pools import read_pools

    pools = read_pools([MEMORY_POOL, COMPUTE_POOL])
    if args.json:
        print(json.dumps(pools, indent=2))
    else:
        for name in (MEMORY_POOL, COMPUTE_POOL):
            row = pools.get(name)
            if row is None:
                print(f"{name:12} missing: run `mlops pools sync` (or start the scheduler)")
                continue
            print(f"{name:12} {row['slots']:4} slots  running {row['running']}, queued {row['queued']}, "
                  f"open {row['open']}  {row['description']}")
    return 0 if all(n in pools for n in (MEMORY_POOL, COMPUTE_POOL)) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops pools", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync", help="size both MLX pools from this machine now and write them")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("show", help="the MLX pools in Airflow's DB (exit 1 if one is missing)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
