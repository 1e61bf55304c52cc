"""Ship the audit, row by row and in order, to append blobs in Azure Blob Storage.

Each row becomes one JSON line, with its hash, in `PREFIX/YYYY/MM/DD.jsonl` (the row's UTC
day), so the archive alone can re-verify the whole chain. The audit table itself is the queue:
`meta.archive_shipped` says how far the archive goes, so an outage of Blob Storage never
blocks a command — rows wait in SQLite and go out when the archive is back.

No duplicates and no gaps: every append is conditional on the blob's length as we last knew it
(`appendpos_condition`). If an append landed but the process stopped before recording it, the
next append's condition fails; we then read the blob back, find the last row it holds, and go
on from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from bot.core.config import ArchiveConfig
from bot.core.errors import BotError
from bot.state.audit import AuditEntry, check_chain
from bot.state.store import Store

log = logging.getLogger(__name__)
SHIPPED_KEY = "archive_shipped"  # value: "<last audit id shipped>"
POSITION_KEY = "archive_position"  # value: "<blob name> <its length after our last append>"
BATCH = 500


def container_client(settings: ArchiveConfig) -> Any:
    """The ContainerClient for ``settings``: a connection string, or DefaultAzureCredential.

    Few retries and short timeouts: the shipper retries on its own schedule, and a command
    must never wait on the archive.
    """
    from azure.storage.blob import BlobServiceClient

    options: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 15}
    if settings.connection_string:
        service = BlobServiceClient.from_connection_string(settings.connection_string, **options)
    else:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(
            settings.account_url, credential=DefaultAzureCredential(), **options
        )
    return service.get_container_client(settings.container)


class ArchiveUnavailable(BotError):
    """Blob Storage could not be reached or refused us; rows stay queued."""


@dataclass(frozen=True)
class ArchiveCheck:
    checked: int
    problems: tuple[str, ...]
    last_id: int

    @property
    def ok(self) -> bool:
        return not self.problems


def blob_name(prefix: str, ts: str) -> str:
    """`2026-11-27T10:00:00.000+00:00` → `audit/2026/11/27.jsonl`."""
    return f"{prefix}/{ts[0:4]}/{ts[5:7]}/{ts[8:10]}.jsonl"


def line(entry: AuditEntry) -> bytes:
    return (json.dumps(entry.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class AuditArchive:
    """Ships audit rows to a container; ``container`` is an azure ContainerClient."""

    def __init__(self, store: Store, container: Any, *, prefix: str = "audit") -> None:
        self._store = store
        self._container = container
        self._prefix = prefix.strip("/")
        self._lock = threading.Lock()  # one shipper at a time in this process

    # -- shipping --------------------------------------------------------------------------

    def pending(self) -> int:
        row = self._store.db.execute(
            "select count(*) from audit where id > ?", [self._shipped()]
        ).fetchone()
        return row[0]

    def ship(self) -> int:
        """Send every row not yet archived; return how many went. Raises ArchiveUnavailable."""
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

        sent = 0
        with self._lock:
            try:
                self._ensure_container(ResourceExistsError)
                while True:
                    rows = self._next_rows()
                    if not rows:
                        return sent
                    for name, group in groupby(rows, key=lambda e: blob_name(self._prefix, e.ts)):
                        batch = list(group)
                        try:
                            self._append(name, batch)
                        except HttpResponseError as exc:
                            if exc.error_code != "AppendPositionConditionNotMet":
                                raise
                            self._recover(name)
                            break  # re-read what is left to send
                        sent += len(batch)
            except AzureError as exc:
                raise ArchiveUnavailable(
                    f"audit archive unavailable ({exc.__class__.__name__}); "
                    f"{self.pending()} rows queued"
                ) from None

    def _ensure_container(self, exists: type[Exception]) -> None:
        with contextlib.suppress(exists):
            self._container.create_container()

    def _next_rows(self) -> list[AuditEntry]:
        rows = self._store.db.query(
            "select * from audit where id > ? order by id limit ?", [self._shipped(), BATCH]
        )
        return [AuditEntry(**row) for row in rows]

    def _append(self, name: str, batch: list[AuditEntry]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._container.get_blob_client(name)
        data = b"".join(line(e) for e in batch)
        known_name, known_length = self._position()
        if known_name != name:
            try:
                known_length = blob.get_blob_properties().size
            except ResourceNotFoundError:
                blob.create_append_blob()
                known_length = 0
        blob.append_block(data, appendpos_condition=known_length)
        self._record(batch[-1].id, name, known_length + len(data))

    def _recover(self, name: str) -> None:
        """An earlier append landed unrecorded: read the blob, resume after its last row."""
        content = self._container.get_blob_client(name).download_blob().readall()
        last = [json.loads(raw) for raw in content.splitlines() if raw.strip()]
        shipped = max([self._shipped(), *(row["id"] for row in last)])
        log.warning("audit archive: %s already held rows up to %s; resuming", name, shipped)
        self._record(shipped, name, len(content))

    # -- bookkeeping -----------------------------------------------------------------------

    def _shipped(self) -> int:
        row = self._store.db.execute(
            "select value from meta where key = ?", [SHIPPED_KEY]
        ).fetchone()
        return int(row[0]) if row else 0

    def _position(self) -> tuple[str | None, int]:
        row = self._store.db.execute(
            "select value from meta where key = ?", [POSITION_KEY]
        ).fetchone()
        if not row:
            return None, 0
        name, _, length = row[0].rpartition(" ")
        return name, int(length)

    def _record(self, shipped: int, name: str, length: int) -> None:
        with self._store.transaction() as db:
            db.execute(
                "insert into meta (key, value) values (?, ?) "
                "on conflict (key) do update set value = excluded.value",
                [SHIPPED_KEY, str(shipped)],
            )
            db.execute(
                "insert into meta (key, value) values (?, ?) "
                "on conflict (key) do update set value = excluded.value",
                [POSITION_KEY, f"{name} {length}"],
            )

    # -- verifying -------------------------------------------------------------------------

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every archived row, in blob-name (day) order, then line order. Only reads; raises
        ArchiveUnavailable when the archive cannot be read (never "nothing there")."""
        from azure.core.exceptions import AzureError

        try:
            names = sorted(
                b.name for b in self._container.list_blobs(name_starts_with=f"{self._prefix}/")
            )
            for name in names:
                content = self._container.get_blob_client(name).download_blob().readall()
                for number, raw in enumerate(content.splitlines(), 1):
                    if raw.strip():
                        yield _parse_line(raw, name, number)
        except AzureError as exc:
            raise ArchiveUnavailable(
                f"audit archive unavailable ({exc.__class__.__name__})"
            ) from None

    def verify(self, *, key: bytes | None = None, keyed_from: int = 1) -> ArchiveCheck:
        """Re-verify the hash chain from the archive alone (rows from ``keyed_from`` on
        under ``key``)."""
        return verify_rows(self.rows(), key=key, keyed_from=keyed_from)


_LINE_FIELDS = {"id": int, "prev_hash": str, "hash": str, "action": str}


def _parse_line(raw: bytes, name: str, number: int) -> dict[str, Any]:
    """One archived row; a line that is not one is a broken archive, said as such."""
    try:
        row = json.loads(raw)
    except ValueError:
        row = None
    if not isinstance(row, dict) or any(
        not isinstance(row.get(k), t) or isinstance(row.get(k), bool)
        for k, t in _LINE_FIELDS.items()
    ):
        raise ArchiveBroken(f"{name} line {number}: not an audit row")
    return row


class ArchiveBroken(BotError):
    """The archive holds something that is not an audit row."""


def verify_rows(
    rows: Iterable[dict[str, Any]], *, key: bytes | None = None, keyed_from: int = 1
) -> ArchiveCheck:
    chain = check_chain(rows, label="archive row", key=key, keyed_from=keyed_from)
    return ArchiveCheck(checked=chain.checked, problems=chain.problems, last_id=chain.last_id)


class Shipper:
    """Ships in the background: soon after each nudge, and every ``interval`` seconds.

    ``allowed``: whether this process ships now. With two replicas only the holder of the
    `archive` lease does (bot/state/leases.py): the conditional appends would keep a second
    shipper from writing a row twice, but it would spend every round losing that race."""

    def __init__(
        self,
        archive: AuditArchive,
        *,
        interval: float = 30.0,
        allowed: Callable[[], bool] = lambda: True,
    ) -> None:
        self.archive = archive
        self.allowed = allowed
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="acr-archive", daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.allowed():
                    self.archive.ship()
            except ArchiveUnavailable as exc:
                log.warning("%s", exc)
            except Exception:
                log.exception("audit archive shipping failed")
            self._wake.wait(self._interval)
            self._wake.clear()
