"""The platform's one Airflow plugin: fair-share priority weights, hardware-sized pools, the toolkit dashboard.

It registers what lives in the `mlops_airflow` package beside it (plugins/mlops_airflow/, imported
through sys.path: Airflow puts this folder on it; plugins/.airflowignore keeps the loader from
importing the package's files a second time under bare names). Loaded by every Airflow process
(task processes too), so it only names things: the strategy classes and the listener module
import nothing heavy at module level, and the dashboard's FastAPI app (`mlops_airflow.dashboard.app`)
is built by the api-server's first request to /toolkit, not here.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow import listeners
from mlops_airflow.fair_share import FairShareWeight, FormerPathWeight


class ToolkitDashboard:
    """The ASGI app Airflow mounts at /toolkit: builds the real one on its first request (FastAPI, the
    dashboard's routes) so that processes that never serve it (scheduler, task runners) never import it."""

    async def __call__(self, scope, receive, send):
        from mlops_airflow.dashboard.app import shared_app

        await shared_app()(scope, receive, send)


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    # weight_rule="mlops_airflow.fair_share.FairShareWeight"; FormerPathWeight answers to its path before
    # issue 16 (operators.fair_share.FairShareWeight), which DAG versions already in a metadata DB name
    priority_weight_strategies = [FairShareWeight, FormerPathWeight]
    # scheduler start: size the pools; every DAG run start: re-read thermal, resize mlx_compute
    listeners = [listeners]
    # the toolkit dashboard (issue 16): served by the api-server, behind Airflow's login, in its navigation
    fastapi_apps = [{"app": ToolkitDashboard(), "url_prefix": "/toolkit", "name": "Toolkit dashboard"}]
    external_views = [
        {
            "name": "Toolkit",
            "href": "toolkit/",  # relative: resolved against Airflow's base URL, shown in its iframe
            "url_route": "toolkit",  # Airflow's UI page: /plugin/toolkit
            "destination": "nav",
            "nav_top_level": True,  # its own entry in Airflow's side bar, not under "Plugins"
        }
    ]
