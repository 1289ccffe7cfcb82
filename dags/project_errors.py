"""Surfaces invalid project YAMLs as an Airflow import error (shown in the UI).

It holds no DAG on purpose: an import error marks every DAG of its file as broken,
so the errors live in this file and the valid DAGs in `project_lifecycles.py`. Each
line names the YAML file, line, column and field. Fixed files clear the error on the
next parse. Only validation runs here (no DAG is built): parsing stays cheap.
"""

from mlops_airflow.dag_factory import collect_project_dags

_projects = collect_project_dags(build=False)
if _projects.errors:
    raise ImportError(_projects.error_report())
