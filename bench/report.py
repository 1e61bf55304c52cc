"""`report` at registry scale: the bot against the raw floor of reading the same manifests.

Starts Debian's docker-registry (distribution 2.8) with REPOS repositories of TAGS tags each
(every tag its own image, written straight into its storage), then measures, in one run:
- the raw floor: in-process urllib3, 16 requests in flight: the catalog, every tag list, and
  one GET of every tag's manifest (what any tool that counts storage must read at least);
- `acrbot run "report"` cold (an empty digest facts cache: each image's manifest and config
  are read once) and warm (the cache filled: only the tags are resolved, one HEAD each), each
  a process of its own: wall and CPU seconds (os.wait4) and peak RSS (VmHWM);
- the same report over a tenth of the repositories, for how memory grows with the registry.

    .venv/bin/python bench/report.py [--repos 200] [--tags 100]

Wall-clock figures depend on the machine's load; CPU seconds and the ratios less so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import urllib3  # noqa: E402

from tests.support.distribution import MANIFEST_ACCEPT, Distribution  # noqa: E402
from tests.support.huge_registry import prepare, run  # noqa: E402


def floor(url: str) -> tuple[float, float, int]:
    """(wall s, CPU s, manifests read): the catalog, the tag lists, a GET per tag."""
    host, port = url.removeprefix("http://").split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=16, block=True)
    began, cpu = time.perf_counter(), time.process_time()
    repos = json.loads(pool.request("GET", "/v2/_catalog?n=1000").data)["repositories"]

    def tags(repo: str) -> list[tuple[str, str]]:
        body = json.loads(pool.request("GET", f"/v2/{repo}/tags/list").data)
        return [(repo, t) for t in body.get("tags") or []]

    def manifest(item: tuple[str, str]) -> int:
        repo, tag = item
        response = pool.request(
            "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
        )
        assert response.status == 200
        return len(response.data)

    with ThreadPoolExecutor(16) as workers:
        items = [i for found in workers.map(tags, repos) for i in found]
        read = sum(1 for _ in workers.map(manifest, items))
    return time.perf_counter() - began, time.process_time() - cpu, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--tags", type=int, default=100, help="tags per repository")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        registry = Distribution(Path(tmp) / "registry", in_memory=True).start()
        try:
            began = time.perf_counter()
            for r in range(args.repos):
                registry.seed_images(f"team{r % 10}/app{r:03d}", args.tags)
            seeded = time.perf_counter() - began
            wall, cpu, read = floor(registry.url)
            rows = []
            for label, repo_glob in (("all", None), ("a tenth", "team0/*")):
                work = Path(tmp) / label.replace(" ", "-")
                work.mkdir()
                config = prepare(work, registry.url, ROOT)
                command = "report --top 5" + (f" --repo '{repo_glob}'" if repo_glob else "")
                rows.append((f"{label}, cold", run(ROOT, config, command)))
                rows.append((f"{label}, warm", run(ROOT, config, command)))
        finally:
            registry.stop()
    tags = args.repos * args.tags
    print(f"registry: {args.repos} repositories, {tags:,} tags (seeded in {seeded:.1f} s)")
    print(f"raw floor (catalog, tag lists, {read:,} manifest GETs, 16 in flight): ")
    print(f"  wall {wall:.2f} s, CPU {cpu:.2f} s")
    print(f"{'report':<16} {'wall s':>7} {'CPU s':>6} {'peak MiB':>9} {'/ floor':>8}  answer")
    for label, row in rows:
        print(
            f"{label:<16} {row['wall_s']:>7.2f} {row['cpu_s']:>6.2f} {row['peak_mib']:>9.0f} "
            f"{row['wall_s'] / wall:>8.2f}  {str(row['answer'])[:100]}"
        )
    print("(wall-clock figures taken on a shared, loaded machine)")


if __name__ == "__main__":
    main()
