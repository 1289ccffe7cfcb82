"""MLX training: model families (a registry), the trainer loop and its metrics."""
