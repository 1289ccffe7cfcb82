"""Task code: the lifecycle's operators, the thermal sensor and its trigger, the hook, and the failure callback.

What runs around the tasks (the plugin, the pools, fair share, the DAG factory, `mlops queue`) is in plugins/mlops_airflow/.
"""
