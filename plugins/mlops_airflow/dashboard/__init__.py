"""The toolkit dashboard (issue 16) as Airflow serves it: a FastAPI app mounted by the ``mlops`` plugin at
``/toolkit`` and shown in Airflow's navigation, behind Airflow's own login.

* ``app``: the routes (pages, JSON API, reports, static files), the login check and a short cache;
* ``airflow_state``: Airflow's metadata DB read into the library's ``AirflowState``;
* ``pages/`` + ``static/``: plain HTML shells, one script and one stylesheet, no build step.

The data itself comes from ``mlops.dashboard`` (include/), which never imports Airflow. Nothing here is
imported by the plugin module: the app is built on its first request (see ``plugins/mlops_plugin.py``).
"""
