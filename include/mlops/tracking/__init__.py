"""Experiment tracking and the model registry, on MLflow."""
