"""Peak memory of the bot listing a 5-million-tag repository, against a 10-tag one, in one run.

Starts tests/support/huge_registry.py (a distribution-API stand-in that streams a generated
tags/list, 59 MB for 5 million tags, every tag one small image), then runs the bot's commands as
`acrbot run` processes (the same dispatcher, handlers and backend as the `serve` worker) and
reads each process's peak RSS and CPU time from the kernel (os.wait4):

- `tags huge/app` (name order: the listing is streamed and one page kept);
- `tags huge/app --orderby time_desc` and `delete huge/app:t1 --manifest` (they resolve every
  tag, one HEAD each: they stop at the documented cap with an error instead), then the same on
  a repository of exactly the cap (50,000 tags: the most memory those can take);
- the same `tags` on a 10-tag repository: the process's own floor.

    .venv/bin/python bench/registry_memory.py [--tags 5000000] [--code DIR --only-tags]

``--code DIR`` runs another checkout's bot (e.g. /work/main, to see the figure before the fix).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers.registries.bounded import MAX_SCANNED_TAGS  # noqa: E402
from tests.support.huge_registry import HugeRegistry, prepare, run  # noqa: E402

DEPLOY_LIMIT_MIB = 256  # deploy/: the memory the container requests (issue 18's budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=5_000_000)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to run")
    parser.add_argument(
        "--only-tags",
        action="store_true",
        help="run only `tags` (a checkout without the cap would send a HEAD per tag)",
    )
    args = parser.parse_args()
    code = args.code.resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with HugeRegistry(tags=10) as small:
            (Path(tmp) / "small").mkdir()
            config = prepare(Path(tmp) / "small", small.url, code)
            floor = run(code, config, "tags huge/app")
        with HugeRegistry(tags=args.tags) as huge:
            size = huge.body_bytes
            (Path(tmp) / "huge").mkdir()
            config = prepare(Path(tmp) / "huge", huge.url, code)
            commands = ["tags huge/app"]
            if not args.only_tags:
                commands += [
                    "tags huge/app --orderby time_desc",
                    "delete huge/app:t1 --manifest --reason bench",
                ]
            rows.extend(run(code, config, command) for command in commands)
        if not args.only_tags:  # the scans that resolve every tag, at the cap itself
            with HugeRegistry(tags=MAX_SCANNED_TAGS) as capped:
                (Path(tmp) / "capped").mkdir()
                config = prepare(Path(tmp) / "capped", capped.url, code)
                for command in (
                    "tags huge/app --orderby time_desc",
                    "delete huge/app:t1 --manifest --reason bench",
                ):
                    row = run(code, config, command)
                    row["command"] = f"{command} ({MAX_SCANNED_TAGS:,} tags)"
                    rows.append(row)
    print(f"code: {code}")
    print(f"repository: {args.tags:,} tags, tags/list body {size / 1e6:.1f} MB (streamed)")
    print(f"floor (10 tags, `tags huge/app`): peak RSS {floor['peak_mib']:.0f} MiB")
    print(f"{'command':<62} {'peak MiB':>9} {'growth':>7} {'CPU s':>6} {'wall s':>7}  answer")
    for row in rows:
        growth = row["peak_mib"] - floor["peak_mib"]  # type: ignore[operator]
        print(
            f"{row['command']:<62} {row['peak_mib']:>9.0f} {growth:>+7.0f} {row['cpu_s']:>6.1f} "
            f"{row['wall_s']:>7.1f}  {str(row['answer'])[:150]}"
        )
    worst = max(r["peak_mib"] for r in rows)  # type: ignore[type-var]
    print(
        f"worst peak / deploy limit ({DEPLOY_LIMIT_MIB} MiB): {worst / DEPLOY_LIMIT_MIB:.2f} "
        "(wall-clock figures taken on a shared, loaded machine)"
    )


if __name__ == "__main__":
    main()
