"""Lake assets, one module per domain."""
