"""Command handlers (one module per command family) and the registry backends they call."""
