"""MLX MLOps library."""
