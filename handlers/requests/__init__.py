"""Requests: every command that makes, shows or decides a request to delete.

reply.py      how a request is described and answered (a leaf: the others import it)
show.py       `request N`, `requests`
delete.py     `delete`: make the request; execute it after approval, re-checked
purge.py      `purge`: plan (dry run), pin the items in a request
purge_run.py  a purge's execution, resumable item by item
decide.py     `approve`, `deny`, `cancel`, recovery; EXECUTORS: the executor for each Action

Imports run one way: decide -> delete, purge_run -> purge -> reply. No module imports one
that imports it, and none uses another's private names (tests/unit/test_layering.py).
"""
