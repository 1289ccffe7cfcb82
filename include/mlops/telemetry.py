"""No phoning home: the switch that turns off each library's usage telemetry, in one place.

Every process the platform starts gets these variables (`airflow_environment`, the services of
`mlops up`, plain `airflow ...` commands through `config/airflow_local_settings.py`); the shared
DVC workspace also gets `core.analytics = false` in its config (`dvc_workspace.open_workspace`).
Each is a default (`setdefault`): a variable the user set wins. `MLOPS_TELEMETRY=on` sets none of
them, leaving every library to its own default (which is on); the platform's own Ray head stays
off regardless (`mlops.serving.ray_cluster` starts it with `--disable-usage-stats`).

Switches as the installed versions read them (checked in their code):

| library            | variable                 | value read as "off"                      |
|--------------------|--------------------------|------------------------------------------|
| MLflow 3.17        | MLFLOW_DISABLE_TELEMETRY | "true"/"1" (`mlflow.telemetry.utils.is_telemetry_disabled`; DO_NOT_TRACK="true" too) |
| Ray 2.60           | RAY_USAGE_STATS_ENABLED  | exactly "0" (`ray._common.usage.usage_lib.usage_stats_enabled`) |
| BentoML 1.4        | BENTOML_DO_NOT_TRACK     | "true", any case (`bentoml._internal.utils.analytics.usage_stats.do_not_track`) |
| DVC 3.67           | DVC_NO_ANALYTICS         | any non-empty value (`dvc.analytics.is_enabled`; the CLI alone sends reports) |
| Evidently 0.7.23   | DO_NOT_TRACK             | set at all, any value (`evidently.telemetry`, its UI's TelemetryComponent) |
| Airflow 3.3        | (none)                   | Airflow 3 has no usage reporting: Scarf was removed (apache/airflow#45865) |

DO_NOT_TRACK is the generic convention (consoledonottrack.com); "true" is the one value both
MLflow (compares to "true") and Evidently (any value) read as off.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# The variable that opts back in: "on" leaves every library to its own default.
OPT_IN = "MLOPS_TELEMETRY"

TELEMETRY_OFF: dict[str, str] = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "BENTOML_DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "true",
}


def telemetry_allowed(env: MutableMapping[str, str] | None = None) -> bool:
    """True when the user opted back in (MLOPS_TELEMETRY=on): then nothing is turned off for them."""
    env = os.environ if env is None else env
    return env.get(OPT_IN, "").strip().lower() in ("on", "1", "true", "yes")


def telemetry_off(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The switches `env` (default: this process's) should get: each one it does not set already."""
    env = os.environ if env is None else env
    if telemetry_allowed(env):
        return {}
    return {name: value for name, value in TELEMETRY_OFF.items() if name not in env}


def apply(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the missing switches to `env` in place (a dict, or os.environ) and return it."""
    env.update(telemetry_off(env))
    return env
