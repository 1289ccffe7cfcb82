"""The Airflow side of the platform that is not task code: what the ``mlops`` plugin registers, and the DAG factory.

* ``fair_share``: the ``FairShareWeight`` priority weight strategy;
* ``listeners`` + ``pool_refresher`` + ``pools``: the MLX pools sized from the hardware and thermal state;
* ``queue_view`` (``mlops queue``) and ``pools_cli`` (``mlops pools``): views on Airflow's metadata DB;
* ``dag_factory``: the project YAMLs' DAGs and the toolkit report DAG, imported by the files in ``dags/``.

Airflow puts the plugins folder on ``sys.path`` in every process it starts (``import airflow`` does), so
this package is imported by that name, once; ``plugins/.airflowignore`` keeps the plugin loader from also
executing its files one by one. Every Airflow process loads the plugin: keep this file, and the
modules ``plugins/mlops_plugin.py`` imports, free of heavy imports at module level.
"""
