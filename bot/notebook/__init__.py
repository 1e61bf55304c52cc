"""acr-chatops in Jupyter: the `%acr` magics and the `Acr` Python API.

    %load_ext bot.notebook
    %acr --config acrbot.toml --user alice         # defaults for this kernel
    %acr tags baseimages/fedora                    # one command
    %%acr                                          # one command a line
    show baseimages/fedora:24
    delete baseimages/fedora:24 --reason "EOL {year}"

    from bot.notebook import Acr                   # the same from Python, and in scripts
    acr = Acr(config="acrbot.toml", user="alice")
    acr.tags("baseimages/fedora", top=50).to_df()

A notebook is one more door to the same bot: every command goes through the Dispatcher (one
grammar, one policy, one audit, whose rows say `@notebook`). A deletion is a request like any
other; with `[slack] requests_channel` its card is posted by the running `acrbot serve`, and
owners approve it in the Slack thread. The notebook never holds a Slack token.

Only bot/notebook/magics.py imports IPython; `Acr` and `Result` need nothing beyond the core
(and pandas for ``to_df``).
"""

from __future__ import annotations

from typing import Any

from bot.notebook.client import Acr, command_line
from bot.notebook.results import CommandFailed, Result, Results, WaitTimeout

__all__ = [
    "Acr",
    "CommandFailed",
    "Result",
    "Results",
    "WaitTimeout",
    "command_line",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext bot.notebook`: register `%acr` / `%%acr` and the `%config Acr` traits."""
    from bot.notebook.magics import register

    register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext bot.notebook` (and `%reload_ext`): forget the magics and their clients."""
    from bot.notebook.magics import unregister

    unregister(ipython)
