"""The process is stopping (SIGTERM): long work stops at its next safe boundary.

A purge checks it between items (handlers/requests/purge_run.py): the items not started stay
`pending`, the request stays `executing` under this process, and the next process's sweep resumes it
once this one has exited — the same path as after a crash, without the crash.
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()


class Interrupted(BaseException):
    """Raised out of long work when STOPPING is set. A BaseException, like KeyboardInterrupt:
    the error boundaries (the dispatcher, a job's runner) must not answer it as a failure —
    nothing failed, the work resumes in the next process."""
