"""Federated averaging across machines, one Airflow task per client and round (issue 17).

`plan` is pure and cheap (the DAG factory reads it while Airflow parses); `steps` holds the
JSON-in, JSON-out functions the operators call; the rest is what those steps share.
"""
