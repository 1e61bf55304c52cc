"""The shared pace: an even rate after a burst, and a pause every worker honours."""

from bot.core.pace import Pace
from bot.core.registry import Limits
from handlers.registries.acr_pace import ReadPace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_an_even_pace_without_a_burst():
    clock = Clock()
    pace = Pace(4, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pace.wait()
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]


def test_a_burst_goes_at_once_then_the_rate_holds():
    clock = Clock()
    pace = Pace(10, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        pace.wait()
    assert clock.slept == [0.1, 0.1]
    clock.now += 10  # idle: the burst is back
    for _ in range(5):
        pace.wait()
    assert clock.slept == [0.1, 0.1]


def test_a_pause_holds_everyone_for_the_retry_after():
    clock = Clock()
    pace = Pace(None, clock=clock, sleep=clock.sleep)
    pace.wait()
    pace.pause(3)
    pace.wait()
    assert clock.slept == [3]


def test_reads_read_the_tier_only_when_a_scan_uses_the_burst_up():
    clock = Clock()
    asked: list[int] = []

    def limits() -> Limits:
        asked.append(1)
        return Limits("Premium", 10_000, 2_000)

    lowest = Limits("Basic", 1_000, 100, known=False)
    reads = ReadPace(None, lowest=lowest, limits=limits, clock=clock, sleep=clock.sleep)
    for _ in range(75):  # 5 s at Basic's 15 reads a second: a command never waits
        reads.wait()
    assert asked == [] and clock.slept == []
    for _ in range(10):
        reads.wait()
    assert asked == [1]  # once
    assert reads.pace.rate == 150.0  # Premium's 10,000 a minute less 10 %


def test_an_explicit_read_rate_never_asks_for_the_tier():
    clock = Clock()
    lowest = Limits("Basic", 1_000, 100, known=False)
    reads = ReadPace(2, lowest=lowest, limits=lambda: 1 / 0, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        reads.wait()
    assert reads.pace.rate == 2
