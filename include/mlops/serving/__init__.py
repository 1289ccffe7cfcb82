"""Model serving: one FastAPI gateway in front of every registered MLX model (no Airflow import)."""
