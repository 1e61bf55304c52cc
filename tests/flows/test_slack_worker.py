"""The worker process `acrbot serve` runs jobs in: start-up, answers, restarts, shutdown."""

import os
import signal
import time
from pathlib import Path

import pytest

from bot.app import build_context
from bot.core.config import SlackSettings
from bot.core.errors import ConfigError
from bot.core.policy import Grant, Role
from bot.slack import handoff
from bot.slack.handoff import DurableSink, Job
from bot.slack.worker import WorkerProcess
from bot.state.jobqueue import JobQueue
from bot.state.store import Store
from tests.support.fixtures import make_config
from tests.support.slack_support import SlowRegistry

# Worker processes started, killed and restarted (seconds): left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path, registry, store_options):
    config = make_config(tmp_path, **store_options)
    ctx = build_context(config)
    ctx.roles.grant(Grant("UCAROL", Role.READER), by="test", at=ctx.clock())
    ctx.store.close()
    return config


@pytest.fixture
def settings(fake_slack):
    return SlackSettings(bot_token="xoxb-test", signing_secret="s", api_url=fake_slack.api_url)


class Front:
    """What the acking process does with a job: record it in the database, ring the worker."""

    def __init__(self, config, worker):
        self.worker = worker
        self.store = Store(config.database)
        self.sink = DurableSink(JobQueue(self.store), worker.ring)

    def submit(self, job):
        return self.sink.submit(job)

    def states(self):
        return dict(self.store.db.execute("select key, state from jobs").fetchall())

    def __getattr__(self, name):
        return getattr(self.worker, name)


@pytest.fixture
def start_worker(config, settings):
    started = []

    def start(**options):
        worker = WorkerProcess(config, settings, **options).start()
        started.append(worker)
        return Front(config, worker)

    yield start
    for worker in started:
        worker.stop(timeout=10)


def tags_job(fake_slack, name, trigger=None):
    return Job(
        handoff.COMMAND,
        {
            "user_id": "UCAROL",
            "channel_id": "C1",
            "text": "tags baseimages/fedora",
            "response_url": fake_slack.response_url(name),
        },
        trigger_id=trigger or name,
    )


NOTE = ":hourglass_flowing_sand: Still working"


def answers(fake_slack, name):
    """The posts to a response_url that are answers (not "still working" notes)."""
    posts = fake_slack.calls_to(f"response_url:{name}")
    return [p for p in posts if not p.get("text", "").startswith(NOTE)]


def answer(fake_slack, name, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = answers(fake_slack, name)
        if found:
            return found[0]["text"]
        time.sleep(0.02)
    raise AssertionError(f"no answer on response_url:{name}")


def wait_dead(pid, timeout=10):
    """Until ``pid`` has exited with all its threads (files close with the last one); a
    zombie waiting to be reaped counts as exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X") and threads == 1:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive")


def test_jobs_run_in_another_process_and_answer_slack(start_worker, fake_slack):
    worker = start_worker()
    assert worker.pid != os.getpid() and worker.is_alive()
    worker.submit(tags_job(fake_slack, "a1"))
    assert answer(fake_slack, "a1") == "2 tags in demo/baseimages/fedora"


def test_a_retried_delivery_runs_once(start_worker, fake_slack):
    worker = start_worker()
    worker.submit(tags_job(fake_slack, "r1", trigger="same"))
    worker.submit(tags_job(fake_slack, "r2", trigger="same"))
    worker.submit(tags_job(fake_slack, "r3"))
    answer(fake_slack, "r3")
    answer(fake_slack, "r1")
    assert not fake_slack.calls_to("response_url:r2")


def test_a_job_sent_after_the_worker_died_starts_a_new_one(start_worker, fake_slack):
    worker = start_worker(restart_delay=60)  # the watcher waits: submit must notice
    first = worker.pid
    os.kill(first, signal.SIGKILL)
    wait_dead(first)
    worker.submit(tags_job(fake_slack, "k1"))
    assert answer(fake_slack, "k1") == "2 tags in demo/baseimages/fedora"
    assert worker.pid != first and worker.restarts == 1


def test_a_dead_worker_is_restarted_without_waiting_for_a_job(start_worker, fake_slack):
    worker = start_worker(restart_delay=0.1)
    first = worker.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while worker.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.restarts == 1 and worker.pid != first
    worker.submit(tags_job(fake_slack, "w1"))
    assert answer(fake_slack, "w1") == "2 tags in demo/baseimages/fedora"


def test_stop_finishes_the_jobs_it_claimed_and_keeps_the_rest(
    config, settings, registry, fake_slack
):
    process = WorkerProcess(config, settings, registries=[SlowRegistry(registry, 1.0)]).start()
    worker = Front(config, process)
    pid = worker.pid
    for i in range(3):
        worker.submit(tags_job(fake_slack, f"s{i}"))
    deadline = time.monotonic() + 10
    while list(worker.states().values()).count("running") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.stop(timeout=20)
    assert [len(answers(fake_slack, f"s{i}")) for i in range(3)] == [1, 1, 1]
    wait_dead(pid)
    assert worker.submit(tags_job(fake_slack, "late")) == "queued"  # kept for the next start
    assert worker.states()["trigger:late"] == "queued"


@pytest.mark.slow  # kills and restarts worker processes (~5 s)
def test_jobs_a_killed_worker_held_are_all_answered_once_after_the_restart(
    config, settings, registry, fake_slack
):
    """Finding 4: 20 commands in flight, worker SIGKILLed: 20 of 20 were never answered."""
    process = WorkerProcess(
        config, settings, registries=[SlowRegistry(registry, 1.5)], restart_delay=0.1
    ).start()
    worker = Front(config, process)
    try:
        for i in range(20):
            assert worker.submit(tags_job(fake_slack, f"f{i}")) == "queued"
        deadline = time.monotonic() + 10
        while "running" not in worker.states().values() and time.monotonic() < deadline:
            time.sleep(0.02)
        first = worker.pid
        os.kill(first, signal.SIGKILL)
        for i in range(20):
            assert answer(fake_slack, f"f{i}", timeout=30) == "2 tags in demo/baseimages/fedora"
        assert worker.pid != first
        time.sleep(0.5)
        assert all(len(answers(fake_slack, f"f{i}")) == 1 for i in range(20))
        assert set(worker.states().values()) == {"done"}
    finally:
        process.stop(timeout=20)


def test_the_worker_ignores_sigint_and_sigterm(start_worker, fake_slack):
    """Ctrl-C reaches the whole process group; the parent decides when the worker stops."""
    worker = start_worker()
    os.kill(worker.pid, signal.SIGINT)
    os.kill(worker.pid, signal.SIGTERM)
    worker.submit(tags_job(fake_slack, "i1"))
    assert answer(fake_slack, "i1") == "2 tags in demo/baseimages/fedora"
    assert worker.restarts == 0


def test_a_config_error_in_the_worker_is_raised_by_start(tmp_path, settings):
    (tmp_path / "afile").write_text("")
    config = make_config(tmp_path, database="afile/acrbot.db")
    with pytest.raises(ConfigError, match=r"afile/acrbot.db: a file is in the way of its folder"):
        WorkerProcess(config, settings).start()
