"""The Slack door: the only package that imports slack_bolt / slack_sdk.

listeners (ack, then hand a job over: handoff.py) -> the durable queue (bot/state/jobqueue.py)
-> worker.py (where jobs run) -> perform.py (what a job does) -> delivery.py (the outbox to
Slack). May import every layer below the doors (bot.core/state/ops/kernel, handlers, bot.app);
tests/unit/test_layering.py checks it.
"""
