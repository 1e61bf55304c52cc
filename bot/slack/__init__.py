"""The Slack transport: the only package that imports slack_bolt / slack_sdk.

The core (bot/*.py, handlers/) stays transport-agnostic; tests/test_layering.py checks it.
"""
