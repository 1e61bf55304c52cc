"""The chaos test: a real `acrbot serve` under a burst of commands, SIGKILLs and failing Slack
and registry calls (tests/support/chaos.py); every promise of issue 10 is counted afterwards.

About a minute. bench/chaos.py runs it longer, with faults inside the DELETE itself.
"""

from tests.support.chaos import Chaos, ChaosOptions


def test_every_promise_holds_under_kills_slack_failures_and_a_failing_registry(
    tmp_path, fake_slack, distribution
):
    counts = Chaos(tmp_path, fake_slack, distribution, ChaosOptions(duration=30, seed=10)).run()
    print("\n".join(counts.lines()))
    assert counts.problems() == []
    # The run really was chaotic, and did something.
    assert counts.worker_kills >= 2 and counts.service_kills >= 1
    assert counts.acked >= 50 and counts.states.get("done", 0) >= 3
    assert counts.slack_failed_calls >= 3 and counts.registry_faulted_calls >= 3
    assert counts.replays >= 20 and counts.verify_runs >= 5
