"""The toolkit-wide `toolkit__report` DAG (airflow: DAG loader): the daily history report of every project.

Built in `operators/report.py`; nothing heavy is imported here (the folder is parsed every 30 s).
"""

from operators.report import build_toolkit_report_dag

toolkit__report = build_toolkit_report_dag()
