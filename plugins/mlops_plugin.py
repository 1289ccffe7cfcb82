"""The platform's one Airflow plugin: fair-share priority weights and hardware-sized pools.

Loaded by every Airflow process (task processes too), so it only names things: the
strategy class and the listener module import nothing heavy at module level.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from operators import listeners
from operators.fair_share import FairShareWeight


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    # weight_rule="operators.fair_share.FairShareWeight"
    priority_weight_strategies = [FairShareWeight]
    # scheduler start: size the pools; every DAG run start: re-read thermal, resize mlx_compute
    listeners = [listeners]
