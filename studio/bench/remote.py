"""`python -m studio.bench remote [--batch 8] [--jobs-batch 4] [--steps 4] [--size 64] [--server URL ...] [--json]`

Generating on ComfyUI servers: items per second for one batch on one server and on two (and their
ratio), the latency from Generate to the first preview frame, and two queued jobs on two servers run
one after the other (as the window ran them before) against side by side (as it runs them now: each on
its own thread, sharing the servers' slots). With no --server it starts two test
servers on this machine's CPU (`studio.bench.comfyui_server`: the first run sets them up, a minute or
two); two CPU servers on one machine share its cores, so the ratio here measures the fan-out's overhead
more than its gain, which needs servers on separate GPUs or machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bench import report


def _request(args: argparse.Namespace, batch: int, seed: int) -> Any:
    from studio.recipe.request import GenerationRequest

    return GenerationRequest("a red circle on a blue background", steps=args.steps, width=args.size,
                             height=args.size, seed=seed, batch_size=batch, model=args.model)


def _items_per_second(pool: Any, args: argparse.Namespace, seed: int) -> float:
    """Seeds no run has used: a ComfyUI server answers a prompt it has just run from its cache."""
    start = time.perf_counter()
    results = pool.generate(_request(args, args.batch, seed))
    return len(results) / (time.perf_counter() - start)


def _first_preview(pool: Any, args: argparse.Namespace, seed: int) -> float:
    start, seen = time.perf_counter(), []

    def on_step(info: Any) -> None:
        if info.preview is not None and not seen:
            seen.append(time.perf_counter() - start)

    pool.generate(_request(args, 1, seed), on_step=on_step)
    return seen[0] if seen else float("nan")


def _two_jobs(pool: Any, args: argparse.Namespace, side_by_side: bool, seed: int) -> float:
    """Seconds for two jobs of --jobs-batch images: one after the other, or each on its own thread at once.
    Seeds never used before: a server gives a prompt it has already run from its cache at once."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [_request(args, args.jobs_batch, seed + 100 * k) for k in range(2)]
    start = time.perf_counter()
    if side_by_side:
        with ThreadPoolExecutor(2) as threads:
            for done in [threads.submit(pool.generate, job) for job in jobs]:
                done.result()
    else:
        for job in jobs:
            pool.generate(job)
    return time.perf_counter() - start


def run(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    from studio.backends.comfy_client import ServerConfig
    from studio.backends.pool import ServerPool

    one = ServerPool([ServerConfig(urls[0], args.in_flight)])
    two = ServerPool([ServerConfig(u, args.in_flight) for u in urls[:2]])
    for url in urls[:2]:  # each server loads the checkpoint once, outside the timings
        ServerPool([ServerConfig(url)]).generate(_request(args, 1, 1))
    latencies = [_first_preview(one, args, 2000 + k) for k in range(args.repeats)]
    single = _items_per_second(one, args, 1000)
    double = _items_per_second(two, args, 5000) if len(urls) > 1 else float("nan")
    in_turn, side_by_side = [], []
    for k in range(args.repeats):  # alternated, so a change in the machine's load falls on both
        in_turn.append(_two_jobs(two, args, False, 10_000 + 1000 * k))
        side_by_side.append(_two_jobs(two, args, True, 10_500 + 1000 * k))
    return {"servers": len(urls[:2]), "batch": args.batch, "steps": args.steps, "size": args.size,
            "in_flight_per_server": args.in_flight, "one_server_items_per_s": single,
            "two_servers_items_per_s": double, "two_vs_one_server": double / single,
            "first_preview_s": statistics.median(latencies), "first_preview_max_s": max(latencies),
            "jobs_batch": args.jobs_batch, "two_jobs_in_turn_s": statistics.median(in_turn),
            "two_jobs_side_by_side_s": statistics.median(side_by_side),
            "side_by_side_vs_in_turn": statistics.median(in_turn) / statistics.median(side_by_side)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench remote", description=__doc__.splitlines()[2])
    parser.add_argument("--batch", type=int, default=8, help="images in the timed batch")
    parser.add_argument("--jobs-batch", type=int, default=4, help="images in each of the two queued jobs")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs for the first-preview latency and for the two jobs (medians)")
    parser.add_argument("--in-flight", type=int, default=1, help="images each server runs at once")
    parser.add_argument("--server", action="append", default=[], metavar="URL",
                        help="use these servers (two for the ratio) instead of starting two here")
    parser.add_argument("--model", default="studio-tiny-sd15", help="the servers' checkpoint")
    parser.add_argument("--json", action="store_true", help="one JSON object, times in seconds")
    args = parser.parse_args(argv)
    started = []
    if not args.server:
        from studio.bench import comfyui_server as cs

        base = Path(tempfile.mkdtemp(prefix="studio-bench-remote-"))
        started = [cs.start(base / f"server-{k}") for k in range(2)]
        try:
            args.server = [cs.wait_ready(s).url for s in started]
        except cs.Unavailable:
            for server in started:
                server.stop()
            raise
    try:
        rows = run(args, args.server)
    finally:
        for server in started:
            server.stop()
    report(f"ComfyUI servers: a batch of {args.batch} at {args.size} px, {args.steps} steps", rows, args.json)
    return 0
