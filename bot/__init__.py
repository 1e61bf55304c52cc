"""acr-chatops: the bot, in layers; each may import only the layers below it.

    core/     pure rules and values: grammar, commands, policy, references, config, replies
    state/    the SQLite database: store, roles, audit, requests, outbox, job queue
    ops/      being operated: metrics, logs, observe hooks, the audit archive
    kernel/   running one command: context, dispatch, shutdown
    (root)    the wiring and the doors: app, cli, console, doctor, demo, retention,
              progress_bar, notebook/ (Jupyter), slack/ (the only Slack code)

Command handlers live in handlers/ (above kernel, below the doors). docs/architecture.md
draws the layers; tests/unit/test_layering.py enforces them.
"""

__version__ = "0.1.0"
