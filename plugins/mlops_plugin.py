"""The platform's one Airflow plugin: fair-share priority weights and hardware-sized pools.

It registers what lives in the `mlops_airflow` package beside it (plugins/mlops_airflow/, imported
through sys.path: Airflow puts this folder on it; plugins/.airflowignore keeps the loader from
importing the package's files a second time under bare names). Loaded by every Airflow process
(task processes too), so it only names things: the strategy classes and the listener module
import nothing heavy at module level.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow import listeners
from mlops_airflow.fair_share import FairShareWeight, FormerPathWeight


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    # weight_rule="mlops_airflow.fair_share.FairShareWeight"; FormerPathWeight answers to its path before
    # issue 16 (operators.fair_share.FairShareWeight), which DAG versions already in a metadata DB name
    priority_weight_strategies = [FairShareWeight, FormerPathWeight]
    # scheduler start: size the pools; every DAG run start: re-read thermal, resize mlx_compute
    listeners = [listeners]
