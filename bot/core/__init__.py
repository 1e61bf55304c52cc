"""The pure core: rules and values, no database, no network, no clock of its own.

Errors, image references, the command grammar and table, policy, the Registry protocol and
its data, request value types, replies and their text rendering, purge specs, patterns,
pacing, configuration and redaction.

May import: the standard library and pure libraries (re2, tomllib, ...), and bot.core itself.
Never bot.state/ops/kernel, handlers, the doors, nor slack_bolt, slack_sdk, IPython, psycopg
or azure (tests/unit/test_layering.py).
"""
