"""Project data and model artifacts, versioned with DVC in one shared workspace."""
