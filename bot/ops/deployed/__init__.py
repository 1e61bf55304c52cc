"""Deployed-image sources (`[[deployed]]`): what runs in Kubernetes clusters and Azure Container
Apps, read concurrently once per command (reader.py). Only this package imports the
`kubernetes` client and azure-mgmt-appcontainers.

May import: bot.core and bot.state. Never bot.kernel, handlers or the doors.
"""
