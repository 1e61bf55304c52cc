"""`acrbot doctor`'s rows for the `[[deployed]]` sources: each source reachable, and allowed
to list each kind it reads (a Kubernetes token without `list cronjobs` fails here, not at
the first deletion, which it would refuse). Rows as data: (name, detail, fix or None)."""

from __future__ import annotations

from bot.core.config import Config
from bot.ops.deployed.errors import SourceUnreadable
from bot.ops.deployed.reader import build_source


def deployed_rows(config: Config) -> list[tuple[str, str, str | None]]:
    """One row per source that may list every kind; one per refused kind otherwise."""
    rows: list[tuple[str, str, str | None]] = []
    for deployed in config.deployed:
        name = f"deployed {deployed.name}"
        try:
            found = build_source(deployed).check()
        except SourceUnreadable as exc:
            rows.append((name, exc.message, exc.fix))
            continue
        refused = [(kind, why) for kind, why in found if why is not None]
        if not refused:
            kinds = ", ".join(kind for kind, _ in found)
            rows.append((name, f"{deployed.type}: may list {kinds}", None))
        for kind, why in refused:
            message, _, fix = why.partition(": ")
            rows.append((f"{name} {kind}", message, fix or why))
    return rows
