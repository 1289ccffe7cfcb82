"""Airflow imports this file in every process whose AIRFLOW_HOME is this repository.

It makes plain `airflow ...` commands work with only `export AIRFLOW_HOME=$(pwd)`: airflow.cfg
reads ${MLOPS_HOME}, so the platform's defaults are filled in here where the shell left them
unset (MLOPS_HOME = $AIRFLOW_HOME/.mlops, the JWT secret, telemetry off; see
`mlops.airflow_env.plain_airflow_defaults`). `mlops airflow ...` and `mlops up` set them all
already, and whatever the shell sets wins.
"""

import os
import warnings

import airflow.settings

from mlops.airflow_env import plain_airflow_defaults

__all__: list[str] = []  # export nothing into airflow.settings (no policies here)

plain_airflow_defaults(os.environ)
# plugins/.airflowignore (it keeps the plugin loader off the mlops_airflow package's files) is read in
# every Airflow process by Airflow 3.3's glob rule, which builds pathspec's GitWildMatchPattern: pathspec
# 1.x deprecates that name, and Airflow shows its modules' deprecation warnings, one line per process.
warnings.filterwarnings("ignore", r"GitWildMatchPattern \('gitwildmatch'\) is deprecated", DeprecationWarning)
# Airflow's settings.initialize() reads [database] sql_alchemy_conn (and the DAG and plugin
# folders) from airflow.cfg *before* importing this file, and expands ${MLOPS_HOME} at that
# moment: read them again now that MLOPS_HOME is set (configure_orm comes next and uses them).
airflow.settings.configure_vars()
