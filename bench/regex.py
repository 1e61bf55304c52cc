"""A reader's purge filter on RE2 (the bot) against Python's `re`, in one run (issue 17.1).

`(a+)+$` searched in `'a' * n + '-'`: Python's backtracking `re` doubles its time with each
`a` (minutes at 40); RE2 stays linear. Measured as CPU time of the search alone, for a few n
small enough that `re` finishes, then RE2 alone at the issue's n = 40 and at a 128-character
tag (the longest a tag may be).

    .venv/bin/python bench/regex.py [--max-n 22]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.core.patterns import compile_user_regex

PATTERN = "(a+)+$"


def cpu(search, text: str, *, repeat: int = 1) -> float:
    started = time.process_time()
    for _ in range(repeat):
        search(text)
    return (time.process_time() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=22, help="largest n given to Python's re")
    args = parser.parse_args()
    backtracking = re.compile(PATTERN).search
    linear = compile_user_regex(PATTERN).search
    print(f"pattern {PATTERN!r} searched in 'a' * n + '-' (CPU seconds of the search)")
    print(f"{'n':>4}  {'re':>10}  {'re2 (bot)':>10}  {'ratio':>8}")
    for n in range(16, args.max_n + 1, 2):
        text = "a" * n + "-"
        slow, fast = cpu(backtracking, text), cpu(linear, text, repeat=1000)
        print(f"{n:>4}  {slow:>10.4f}  {fast:>10.7f}  {slow / fast:>8,.0f}x")
    for n in (40, 127):
        text = "a" * n + "-"
        print(f"{n:>4}  {'(minutes+)':>10}  {cpu(linear, text, repeat=1000):>10.7f}")


if __name__ == "__main__":
    main()
