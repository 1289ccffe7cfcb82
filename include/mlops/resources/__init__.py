"""How projects share the machine: Airflow pools sized from the hardware, queues, fair share."""
