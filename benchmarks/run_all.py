"""``make bench``: the SDK side by side with what users write instead, and its sans-I/O cores.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--rounds R] ...``

Set-up. The exchange simulator runs in its own process
(``python -m cadenza_async.testing``, uvloop when installed) with a pool of
open orders; the benchmark process lists their ids once and hands every
round fresh ones. The contenders (``benchmarks/contenders``: raw, peer,
sdk_http, sdk_ws) run in this process, one at a time, in alternating order
from round to round; each round a contender connects, warms up, runs the
sequential phase, runs the bulk phase, and closes (only one client is
subscribed at a time, so nobody pays for another's events).

Figures per contender (the median over rounds of each round's figure):

- CPU microseconds per confirmed cancel: ``time.process_time()`` of this
  process over the bulk window divided by the confirmed cancels (and the
  same over the sequential window);
- median and p99 latency of sequential ``cancel_and_confirm`` (wall clock
  around each call);
- bulk throughput: confirmed cancels per second at the given concurrency;
- peak RSS: each contender in a fresh process (``rss_probe.py``) runs a
  bulk cancel; its peak RSS (``VmHWM``) is reported with the RSS after imports.

Micro-benchmarks (``bench_ingest.py``): frame bytes -> CentrifugoProtocol ->
decode_order_event -> ConfirmationRegistry at 10, 1,000 and 100,000 pending
waiters; tracemalloc bytes per pending waiter at 100,000.

Output: ``benchmarks/results/latest.json``, a markdown table (printed, and
written between ``<!-- bench:start -->`` / ``<!-- bench:end -->`` in
docs/performance.md, or to ``benchmarks/results/latest.md`` when that page has no
markers), and ``benchmarks/results/latency.png``. Targets are printed as
PASS/FAIL; the exit status is 0 either way (numbers are not tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from contenders import NAMES, Target, make  # noqa: E402

RESULTS = HERE / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
LIST_PATH = "/api/v3/tradeOrder/list"


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The simulator in a child process; ``target`` once it has printed its addresses."""

    def __init__(self, orders: int, cancel_delay: float, wire: str = "current") -> None:
        self.orders = orders
        self.cancel_delay = cancel_delay
        self.wire = wire
        self.proc: subprocess.Popen[str] | None = None
        self.target: Target | None = None

    def __enter__(self) -> Simulator:
        cmd = [
            sys.executable,
            "-m",
            "cadenza_async.testing",
            "--port",
            "0",
            "--orders",
            str(self.orders),
            "--cancel-delay",
            str(self.cancel_delay),
            "--history-size",
            "300",
            "--wire",
            self.wire,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ}
        )
        fields: dict[str, str] = {}
        assert self.proc.stdout is not None
        while "orders" not in fields:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited early (status {self.proc.poll()})")
            key, _, value = line.strip().partition(": ")
            fields[key] = value
        self.target = Target(
            api_url=fields["api_url"],
            ws_url=fields["ws_url"],
            token=fields["token"],
            account=fields["trading_account_id"],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


async def list_open_ids(target: Target, expected: int) -> list[str]:
    """Every order id in the simulator's pool, page by page (1,000 a page)."""
    import aiohttp

    ids: list[str] = []
    headers = {"Authorization": f"Bearer {target.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while len(ids) < expected:
            url = f"{target.api_url}{LIST_PATH}?limit=1000&offset={len(ids)}"
            async with session.get(url) as resp:
                body = json.loads(await resp.read())
            page = body["data"]
            if not page:
                break
            ids += [o["tradeOrderId"] for o in page if o["status"] == "OPEN"]
    if len(ids) < expected:
        raise RuntimeError(f"the pool has {len(ids)} open orders, {expected} needed")
    return ids


# --------------------------------------------------------------------------- one round


class GcMeter:
    """Time spent in the cyclic garbage collector, and its collections, while active.

    CPython starts a collection after about 700 net allocations of GC-tracked
    objects (coroutines, futures, tasks, class instances); a client that keeps
    more such objects alive per cancel in flight pays more collections in bulk.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def run_round(
    name: str, target: Target, ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Connect one contender, warm up, time the sequential and bulk phases, close."""
    warm = ids[: args.warmup]
    seq = ids[args.warmup : args.warmup + args.seq]
    bulk = ids[args.warmup + args.seq :]
    contender = make(name)
    await contender.start(target)
    try:
        for oid in warm:
            await contender.cancel_and_confirm(oid)
        gc.collect()
        latencies: list[float] = []
        clock = time.perf_counter
        cpu0, wall0 = time.process_time(), clock()
        for oid in seq:
            t0 = clock()
            await contender.cancel_and_confirm(oid)
            latencies.append(clock() - t0)
        seq_cpu, seq_wall = time.process_time() - cpu0, clock() - wall0
        gc.collect()
        with GcMeter() as meter:
            cpu0, wall0 = time.process_time(), clock()
            confirmed = await contender.cancel_many(bulk, args.concurrency)
            bulk_cpu, bulk_wall = time.process_time() - cpu0, clock() - wall0
    finally:
        await contender.aclose()
    latencies.sort()
    return {
        "latencies": latencies,
        "seq_median_us": statistics.median(latencies) * 1e6,
        "seq_p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6,
        "seq_cpu_us": seq_cpu / len(seq) * 1e6,
        "seq_wall_s": seq_wall,
        "bulk_confirmed": confirmed,
        "bulk_requested": len(bulk),
        "bulk_per_s": confirmed / bulk_wall,
        "bulk_cpu_us": bulk_cpu / max(1, confirmed) * 1e6,
        "bulk_gc_us": meter.seconds / max(1, confirmed) * 1e6,
        "bulk_gc_collections": meter.collections,
        "bulk_wall_s": bulk_wall,
    }


def rss_probe(name: str, target: Target, ids: list[str], concurrency: int) -> dict[str, Any]:
    spec = {
        "name": name,
        "target": target.__dict__,
        "ids": ids,
        "concurrency": concurrency,
    }
    out = subprocess.run(
        [sys.executable, str(HERE / "rss_probe.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- report


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def summarise(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rounds in per_round.items():
        out[name] = {
            key: median_of(rounds, key)
            for key in (
                "bulk_cpu_us",
                "bulk_gc_us",
                "seq_cpu_us",
                "seq_median_us",
                "seq_p99_us",
                "bulk_per_s",
            )
        }
        out[name]["rounds"] = [{k: v for k, v in r.items() if k != "latencies"} for r in rounds]
    return out


def targets(summary: dict[str, dict[str, Any]], micro: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue with its measured value and PASS/FAIL."""
    checks: list[dict[str, Any]] = []

    def ratio(name: str, a: str, b: str, key: str, limit: float) -> None:
        if a not in summary or b not in summary:
            return
        value = summary[a][key] / summary[b][key]
        checks.append(
            {"target": name, "value": value, "limit": f"<= {limit}", "pass": value <= limit}
        )

    ratio("SDK/HTTP CPU per confirmed cancel vs raw", "sdk_http", "raw", "bulk_cpu_us", 1.0)
    ratio("SDK/HTTP CPU per confirmed cancel vs peer", "sdk_http", "peer", "bulk_cpu_us", 1.0)
    ratio("SDK/HTTP sequential median latency vs raw", "sdk_http", "raw", "seq_median_us", 1.05)
    ratio("SDK/WS CPU per confirmed cancel vs peer", "sdk_ws", "peer", "bulk_cpu_us", 0.5)
    ratio(
        "SDK/HTTP CPU per confirmed cancel, OpenTelemetry on vs off",
        "sdk_otel",
        "sdk_http",
        "bulk_cpu_us",
        1.5,
    )
    ratio("SDK/WS sequential median latency vs peer", "sdk_ws", "peer", "seq_median_us", 0.7)
    rates = micro["ingest"]
    big, small = rates["100000"]["median"], rates["10"]["median"]
    checks.append(
        {
            "target": "ingestion at 100,000 pending waiters (updates/s)",
            "value": big,
            "limit": ">= 200000",
            "pass": big >= 200_000,
        }
    )
    checks.append(
        {
            "target": "ingestion at 100,000 vs 10 pending waiters",
            "value": big / small,
            "limit": ">= 0.9",
            "pass": big / small >= 0.9,
        }
    )
    per = micro["bytes_per_waiter"]["registry"]
    checks.append(
        {
            "target": "bytes per pending waiter at 100,000 (registry)",
            "value": per,
            "limit": "<= 1024",
            "pass": per <= 1024,
        }
    )
    return checks


def markdown(result: dict[str, Any]) -> str:
    s = result["contenders"]
    rss = result.get("rss", {})
    cfg = result["config"]
    lines = [
        f"Measured {result['when']} on {result['machine']} "
        f"(Python {result['python']}; client loop: {cfg['client_loop']}; simulator in its own "
        f"process on {cfg['sim_loop']}; {cfg.get('wire', 'legacy')} wire; "
        f"cancel delay {cfg['cancel_delay'] * 1e3:g} ms; "
        f"GC threshold {cfg.get('gc_threshold', 700)}; "
        f"median of {cfg['rounds']} alternating rounds).",
        "",
        "| contender | CPU us / confirmed cancel (bulk) | of which in the GC "
        "| CPU us (sequential) | median latency us | p99 latency us "
        f"| bulk cancels/s ({cfg['bulk']:,} at {cfg['concurrency']}) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in NAMES:
        if name not in s:
            continue
        c = s[name]
        probe = rss.get(name)
        mem = (
            f"{probe['peak'] / 2**20:.1f} ({probe['baseline'] / 2**20:.1f} after imports)"
            if probe
            else "-"
        )
        lines.append(
            f"| {name} | {c['bulk_cpu_us']:.0f} | {c['bulk_gc_us']:.1f} | {c['seq_cpu_us']:.0f} "
            f"| {c['seq_median_us']:.0f} | {c['seq_p99_us']:.0f} | {c['bulk_per_s']:,.0f} "
            f"| {mem} |"
        )
    micro = result["micro"]
    lines += [
        "",
        "| pending waiters | frame -> resolved waiter (updates/s) |",
        "|---:|---:|",
    ]
    for size, r in micro["ingest"].items():
        lines.append(f"| {int(size):,} | {r['median']:,.0f} |")
    mem = micro["bytes_per_waiter"]
    lines += [
        "",
        f"Memory per pending waiter at 100,000 (tracemalloc): {mem['registry']:.0f} B in the "
        f"registry, {mem['with_future']:.0f} B with the client's future.",
        "",
        "| target | measured | limit | |",
        "|---|---:|---|---|",
    ]
    for t in result["targets"]:
        value = t["value"]
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        lines.append(
            f"| {t['target']} | {shown} | {t['limit']} | {'PASS' if t['pass'] else 'FAIL'} |"
        )
    if cfg.get("rss_probe_cancels"):
        lines += [
            "",
            f"Peak RSS: each contender in a fresh process, {cfg['rss_probe_cancels']:,} "
            f"confirmed cancels at concurrency {cfg['concurrency']} (`VmHWM`), next to its RSS after imports.",
        ]
    return "\n".join(lines) + "\n"


def write_table(table: str, readme: Path, out: Path) -> str:
    """Put the table between the README markers; else into ``out/latest.md``. Where it went."""
    text = readme.read_text() if readme.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{table}{END}{tail}")
        return str(readme)
    path = out / "latest.md"
    path.write_text(table)
    return str(path)


def plot(per_round: dict[str, list[dict[str, Any]]], path: Path, cancel_delay: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in NAMES:
        if name not in per_round:
            continue
        lat = sorted(x * 1e3 for r in per_round[name] for x in r["latencies"])
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        ax.plot(lat, ys, label=name, drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_xlabel("sequential cancel_and_confirm latency (ms, log scale)")
    ax.set_ylabel("fraction of cancels")
    ax.set_title(f"Latency distribution (cancel delay {cancel_delay * 1e3:g} ms, all rounds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny counts, one round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seq", type=int, default=1_000, help="sequential cancels per round")
    p.add_argument("--bulk", type=int, default=10_000, help="bulk cancels per round")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--cancel-delay", type=float, default=0.0, help="exchange delay (s)")
    p.add_argument("--contenders", default=",".join(NAMES))
    p.add_argument(
        "--wire",
        choices=("current", "legacy"),
        default="current",
        help="the simulator's API generation (current: RFC 3339 times in events)",
    )
    p.add_argument("--rss-cancels", type=int, default=2_000, help="0 skips the RSS probes")
    p.add_argument("--events", type=int, default=100_000, help="frames per ingestion round")
    p.add_argument("--micro-rounds", type=int, default=5)
    p.add_argument("--uvloop", action="store_true", help="run the contenders on uvloop")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--readme", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--gc-threshold",
        type=int,
        default=None,
        metavar="N",
        help="run the contenders with gc.set_threshold(N) (Python's default is 700)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.seq, args.bulk = 1, 5, 20, 100
        args.rss_cancels, args.events, args.micro_rounds = 50, 2_000, 1
    return args


async def measure(args: argparse.Namespace, names: list[str], target: Target, ids: list[str]):
    per_round: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    per = args.warmup + args.seq + args.bulk
    cursor = 0
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            chunk, cursor = ids[cursor : cursor + per], cursor + per
            result = await run_round(name, target, chunk, args)
            per_round[name].append(result)
            print(
                f"round {r + 1} {name:>8}: bulk {result['bulk_cpu_us']:6.0f} us CPU/cancel "
                f"({result['bulk_gc_us']:4.1f} in {sum(result['bulk_gc_collections'])} GC runs), "
                f"{result['bulk_per_s']:7,.0f}/s; sequential median "
                f"{result['seq_median_us']:6.0f} us, p99 {result['seq_p99_us']:6.0f} us",
                flush=True,
            )
            await asyncio.sleep(0.2)  # let the simulator settle
    return per_round, cursor


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    for n in names:
        if n not in NAMES:
            raise SystemExit(f"unknown contender {n!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gc_threshold is not None:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    per = args.warmup + args.seq + args.bulk
    rss_n = args.rss_cancels
    total = per * len(names) * args.rounds + rss_n * len(names)
    started = time.time()

    runner: Any = asyncio.run
    client_loop = "asyncio"
    if args.uvloop:
        import uvloop

        runner, client_loop = uvloop.run, "uvloop"
    sim_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"

    print(f"simulator: {total:,} open orders, cancel delay {args.cancel_delay * 1e3:g} ms")
    with Simulator(total, args.cancel_delay, args.wire) as sim:
        assert sim.target is not None
        target = sim.target
        ids = runner(list_open_ids(target, total))
        per_round, cursor = runner(measure(args, names, target, ids))
        rss: dict[str, Any] = {}
        if rss_n:
            for name in names:
                chunk, cursor = ids[cursor : cursor + rss_n], cursor + rss_n
                rss[name] = rss_probe(name, target, chunk, args.concurrency)
                print(
                    f"rss {name:>8}: peak {rss[name]['peak'] / 2**20:.1f} MiB "
                    f"(after imports {rss[name]['baseline'] / 2**20:.1f} MiB)",
                    flush=True,
                )

    import bench_ingest

    micro = {
        "ingest": {
            str(k): v for k, v in bench_ingest.ingest_rates(args.events, args.micro_rounds).items()
        },
        "bytes_per_waiter": bench_ingest.bytes_per_waiter(100_000),
        "events_per_round": args.events,
    }
    summary = summarise(per_round)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "config": {
            "rounds": args.rounds,
            "warmup": args.warmup,
            "seq": args.seq,
            "bulk": args.bulk,
            "concurrency": args.concurrency,
            "cancel_delay": args.cancel_delay,
            "wire": args.wire,
            "gc_threshold": gc.get_threshold()[0],
            "client_loop": client_loop,
            "sim_loop": sim_loop,
            "rss_probe_cancels": rss_n,
            "quick": args.quick,
        },
        "contenders": summary,
        "rss": rss,
        "micro": micro,
        "seconds": 0.0,
    }
    result["targets"] = targets(summary, micro)
    result["seconds"] = round(time.time() - started, 1)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    print()
    print(table)
    where = write_table(table, args.readme, args.out)
    print(f"table written to {where}")
    if not args.no_plot:
        plot(per_round, args.out / "latency.png", args.cancel_delay)
    for t in result["targets"]:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']:.3g} ({t['limit']})")
    print(f"done in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
