"""reconcile: converge a Docker stack that holds data, without losing it."""

__version__ = "0.1.0"
