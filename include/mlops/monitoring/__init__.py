"""Monitoring: prediction capture, drift checks, alerts, retraining triggers, performance degradation."""
