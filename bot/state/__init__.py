"""The database (SQLite): what the bot remembers across restarts.

The store and its schema, roles, the hash-chained audit, requests and their state machine
(recovery.py: finishing what a crash left `executing`),
purge items, registry facts, the outbox and announcements, request cards, the durable job
queue, process liveness, leases (what runs on one replica at a time) and the handover of a
stopping worker's work, and database health.

May import: bot.core. Never bot.ops, bot.kernel, handlers or the doors.
"""
