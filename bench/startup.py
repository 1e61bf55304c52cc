"""`acrbot run help` as a whole process against `python -c pass`, in one run.

Scripts call `acrbot run` in loops, so what each call costs before it does anything matters.
Both commands run N times, interleaved (so load on the machine hits both alike), each as its
own process; the CPU time of each is read with getrusage(RUSAGE_CHILDREN) around it (user +
system: steadier than wall time on a shared machine). Prints the medians and their ratio.

The demo (an oci-layout registry) is seeded in a temporary directory unless --config names a
configuration to use instead (e.g. one with acr registries). Bytecode is compiled first, as
pip does when it installs a package; with PYTHONDONTWRITEBYTECODE set and no bytecode, each
run would also compile the bot's sources (~0.1 s).

    .venv/bin/python bench/startup.py [--runs 15] [--config FILE] [--user alice]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 0.25  # seconds of CPU for `acrbot run help` (issue 17)


def measure(argv: list[str], *, cwd: Path) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--config", help="configuration to use (default: a fresh demo)")
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()

    for package in ("bot", "handlers"):
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        config = args.config
        if config is None:
            from bot import demo

            demo.prepare(cwd / "demo", fresh=True)
            config = str(cwd / "demo" / "acrbot.toml")
        acrbot = str(Path(sys.executable).with_name("acrbot"))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "acrbot run help": [acrbot, "run", "--config", config, "--user", args.user, "help"],
        }
        for argv in commands.values():
            measure(argv, cwd=cwd)  # warm the page cache once
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        wall: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                c, w = measure(argv, cwd=cwd)
                cpu[name].append(c)
                wall[name].append(w)

    print(
        f"{args.runs} runs each, interleaved; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':18} {'CPU median':>11} {'CPU max':>8} {'wall median':>12}")
    for name in commands:
        print(
            f"{name:18} {statistics.median(cpu[name]):10.3f}s {max(cpu[name]):7.3f}s "
            f"{statistics.median(wall[name]):11.3f}s"
        )
    run, floor = statistics.median(cpu["acrbot run help"]), statistics.median(cpu["python -c pass"])
    print(
        f"acrbot run help: {run:.3f} s of CPU, {run / floor:.1f}x `python -c pass`, "
        f"{run - floor:.3f} s above it; target {TARGET} s: {'met' if run <= TARGET else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
