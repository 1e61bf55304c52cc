"""acr-chatops core: grammar, policy, store, audit, requests and app wiring (no Slack here)."""

__version__ = "0.1.0"
