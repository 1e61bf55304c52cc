"""The console's progress bar: says what it is doing, and is drawn only on a terminal."""

import io
import os

from bot.core.registry import DELETING, RESOLVING_TAGS
from bot.progress_bar import ProgressBar


def drawn_on_a_terminal(*reports):
    """What a bar fed ``reports`` writes to a real pseudo-terminal."""
    leader, follower = os.openpty()
    stream = os.fdopen(follower, "w")
    try:
        bar = ProgressBar(stream=stream)
        for report in reports:
            bar(*report)
        bar.close()
        stream.flush()
        os.set_blocking(leader, False)
        chunks = []  # a pty hands writes back in pieces: read until nothing is left
        while True:
            try:
                chunk = os.read(leader, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        stream.close()
        os.close(leader)


def test_progress_bar_says_what_it_is_doing_on_a_terminal():
    screen = drawn_on_a_terminal((100, 2003, RESOLVING_TAGS), (2003, 2003, RESOLVING_TAGS))
    assert "resolving 2,003 tags: " in screen
    assert "/2003 " in screen
    assert "working" not in screen


def test_progress_bar_relabels_when_the_activity_changes():
    screen = drawn_on_a_terminal((10, 40, RESOLVING_TAGS), (3, 12, DELETING))
    assert "resolving 40 tags: " in screen
    assert "deleting 12 tags and manifests: " in screen


def test_progress_bar_draws_nothing_into_captured_output():
    captured = io.StringIO()
    bar = ProgressBar(stream=captured)
    bar(100, 2003, RESOLVING_TAGS)
    bar(2003, 2003, RESOLVING_TAGS)
    bar.close()
    assert captured.getvalue() == ""


def test_progress_bar_draw_can_be_asked_for():
    """A notebook cell is no terminal, but someone watches it: the notebook asks for a bar."""
    captured = io.StringIO()
    bar = ProgressBar(stream=captured, draw=True)
    bar(5, 10, RESOLVING_TAGS)
    bar.close()
    assert "resolving 10 tags: " in captured.getvalue()
