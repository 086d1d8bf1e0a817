"""The spec: models, loading with positions, interpolation and cross-checks (pure)."""
