"""Every `projects/*.yaml` becomes its `<name>__lifecycle` DAG (airflow: DAG loader).

Drop a YAML into projects/ and its DAG appears on the next parse. Files that do not
validate are skipped here and reported by `project_errors.py`, so they never hide the
DAGs of the other projects.
"""

from mlops_airflow.dag_factory import collect_project_dags

globals().update(collect_project_dags().dags)
