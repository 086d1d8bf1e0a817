"""Commands beyond the foundation (health, backup, apply…) register here as they land."""
