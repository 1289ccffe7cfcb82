"""The toolkit dashboard's data (issue 16): one JSON-ready dict per page, read from MLflow, the gateway,
the project YAMLs, the reports and this machine, with Airflow's state handed in as plain data.

Importable without Airflow: the plugin (`plugins/mlops_airflow/dashboard/`) reads Airflow's DB into an
`AirflowState` and calls `build_overview` / `build_project`. A source that cannot be read leaves its part
empty and says why in `notes`; nothing is invented and nothing raises out of the builders.
"""
