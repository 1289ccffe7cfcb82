"""The toolkit-wide `toolkit__report` DAG (airflow: DAG loader): the daily history report of every project.

Built in `mlops_airflow.dag_factory` (plugins/); nothing heavy is imported here (the folder is parsed every 30 s).
"""

from mlops_airflow.dag_factory import build_toolkit_report_dag

toolkit__report = build_toolkit_report_dag()
