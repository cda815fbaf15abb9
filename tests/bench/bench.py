#!/usr/bin/env python3
"""The benchmark harness behind scripts/bench: runs each benchmark's arms and writes NAME.json.

Every arm runs as its own child process (the `sluice` launcher, or sluice-plain-loop for the
plain-loop arms), so peak RSS is per arm (the child's VmHWM). Arms of one benchmark run in
one invocation on the same generated input, interleaved and repeated, and the JSON holds the
median of the repetitions (and every repetition), since the machine is shared and noisy.
"""

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUMMARY_RE = re.compile(
    r"pipeline (?P<name>\S+): (?P<records_in>\d+) records in, (?P<delivered>\d+) delivered, "
    r"(?P<dead_lettered>\d+) dead-lettered, (?P<filtered>\d+) filtered, (?P<rejected>\d+) "
    r"rejected; (?P<sink_records>\d+) written by the sink; (?P<seconds>[\d.]+) s, "
    r"(?P<records_per_s>[\d.]+) records/s; batch size (?P<batch_size>\d+), concurrency "
    r"(?P<concurrency>\d+), peak memory (?P<peak_memory_mb>[\d.]+) MB")

BATCHES = [10, 50, 100, 500, 1000, 5000]
CONCURRENCIES = [1, 2, 4, 8, 16]
# The cost model of the adaptive benchmark (issue 3): 2 ms per batch, 5 us per record, knee 4.
SINK_COST = {"batch_cost_ms": 2, "record_cost_us": 5, "knee": 4}
# The "JSON transform": parse each value, add a field, serialize (the fields plugin does this).
JSON_TRANSFORM = {"type": "fields", "add": {"enriched": True, "source": "bench"}}


class Harness:
    def __init__(self, args):
        self.build_dir = Path(args.build_dir).resolve()
        self.out_dir = Path(args.out).resolve()
        self.work_dir = self.out_dir / "work"
        self.quick = args.quick
        self.reps_override = args.reps
        self.sluice = self.build_dir / "bin" / "sluice"
        self.plain_loop = self.build_dir / "bin" / "sluice-plain-loop"
        self.plugin_dir = self.build_dir / "plugins-out"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.run_counter = 0

    def reps(self, default, quick):
        if self.reps_override:
            return self.reps_override
        return quick if self.quick else default

    # ---- running one arm ---------------------------------------------------------------

    def pipeline_file(self, tag, spec):
        # YAML is a superset of JSON, so the pipeline is written as JSON: no YAML library needed.
        path = self.work_dir / f"{tag}.yaml"
        path.write_text(json.dumps(spec, indent=1) + "\n")
        return path

    def _spawn(self, argv, tag, stop_after_s=None, timeout_s=1800, tick=None):
        self.run_counter += 1
        out_path = self.work_dir / f"{tag}.out"
        err_path = self.work_dir / f"{tag}.log"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err)
            started = time.monotonic()
            status, peak_kib = self._wait(proc, started, stop_after_s, timeout_s, tick)
        wall = time.monotonic() - started
        return {
            "exit": status,
            "stdout": out_path.read_text(),
            "stderr_file": str(err_path),
            "wall_s": wall,
            "peak_rss_mb": peak_kib / 1024.0 if peak_kib else None,
        }

    @staticmethod
    def _wait(proc, started, stop_after_s, timeout_s, tick=None):
        """Waits for the child (SIGINT at stop time); returns its exit code and peak RSS in KiB.

        Peak RSS is the child's VmHWM, read every 20 ms: wait4's ru_maxrss would not do, since
        Linux carries the high-water mark across fork + exec, so every child would report at
        least this Python process's RSS. VmHWM never falls, so the last reading is the peak
        up to 20 ms before exit (the drain at the end frees memory rather than takes it).
        """
        interrupted = False
        peak_kib = 0
        status_file = Path(f"/proc/{proc.pid}/status")
        while True:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            if tick:
                tick(time.monotonic() - started)
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, peak_kib
            elapsed = time.monotonic() - started
            if stop_after_s is not None and not interrupted and elapsed >= stop_after_s:
                proc.send_signal(signal.SIGINT)
                interrupted = True
            if elapsed > timeout_s:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                return proc.returncode, peak_kib
            time.sleep(0.02)

    def run_sluice(self, tag, spec, stop_after_s=None, probe=False, timeline=False):
        """Runs one pipeline through the launcher; returns its figures.

        timeline: also sample the stats file each time the launcher rewrites it (every second)
        into fig["timeline"], for per-interval throughput, limits and memory.
        """
        report = self.work_dir / f"{tag}.probe.json"
        if probe:
            spec["sink"]["report_file"] = str(report)
            report.unlink(missing_ok=True)
        path = self.pipeline_file(tag, spec)
        stats_path = self.work_dir / f"{tag}.stats.json"
        stats_path.unlink(missing_ok=True)
        argv = [str(self.sluice), "--log-level", "warn", "run", str(path), "--plugin-path",
                str(self.plugin_dir), "--stats-file", str(stats_path)]
        sampler = StatsSampler(stats_path) if timeline else None
        r = self._spawn(argv, tag, stop_after_s=stop_after_s,
                        tick=sampler.tick if sampler else None)
        m = SUMMARY_RE.search(r["stdout"])
        if r["exit"] != 0 or not m:
            raise RuntimeError(f"{tag}: sluice exited {r['exit']} without a summary; see "
                               f"{r['stderr_file']}")
        fig = {k: float(v) if "." in v else int(v) for k, v in m.groupdict().items() if k != "name"}
        fig["peak_rss_mb"] = r["peak_rss_mb"]
        fig["wall_s"] = round(r["wall_s"], 3)
        fig["records_per_s"] = fig["delivered"] / fig["seconds"] if fig["seconds"] > 0 else 0
        if stats_path.exists():
            stats = json.loads(stats_path.read_text())
            for pipeline in stats.get("pipelines", {}).values():
                for stage in pipeline.get("stages", {}).values():
                    fig["final_batch_size"] = stage["batch_size"]["current"]
                    fig["final_concurrency"] = stage["concurrency"]["current"]
                    fig["stage_peak_memory_mb"] = stage["memory"]["peak_mb"]
                    fig["p99_batch_time_ms"] = stage["performance"]["p99_batch_time_ms"]
                    fig["controller"] = stage.get("controller")
                    for k, v in stage.get("extra", {}).items():
                        if k.endswith((".latency_p50_ms", ".latency_p99_ms")):
                            fig[k.rsplit(".", 1)[1]] = v
        if sampler:
            fig["timeline"] = sampler.samples
        if probe:
            if not report.exists():
                raise RuntimeError(f"{tag}: the probe sink wrote no report")
            fig["sink"] = json.loads(report.read_text())
        return fig

    def run_plain_loop(self, tag, spec):
        path = self.pipeline_file(tag, spec)
        argv = [str(self.plain_loop), str(path), "--plugin-path", str(self.plugin_dir)]
        r = self._spawn(argv, tag)
        if r["exit"] != 0:
            raise RuntimeError(f"{tag}: plain loop exited {r['exit']}; see {r['stderr_file']}")
        fig = json.loads(r["stdout"].strip().splitlines()[-1])
        fig["peak_rss_mb"] = r["peak_rss_mb"]
        return fig

    # ---- repetitions and medians -------------------------------------------------------

    def interleaved(self, name, arms, reps):
        """Runs every arm `reps` times, interleaved (arm order rotated each round).

        `arms` maps an arm name to fn(tag) -> figures. Returns {arm: [figures per rep]}.
        """
        names = list(arms)
        runs = {a: [] for a in names}
        for rep in range(reps):
            shift = rep % len(names)
            for arm in names[shift:] + names[:shift]:
                tag = f"{name}-{arm}-r{rep}"
                fig = arms[arm](tag)
                runs[arm].append(fig)
                print(f"  {tag}: {brief(fig)}", flush=True)
        return runs


class StatsSampler:
    """Reads the stats file each time the launcher rewrites it: one sample per interval."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.samples = []

    def tick(self, t):
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self.mtime:
                return
            stats = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        self.mtime = mtime
        for pipeline in stats.get("pipelines", {}).values():
            for stage in pipeline.get("stages", {}).values():
                self.samples.append({
                    "t": round(t, 3),
                    "records_out": stage["performance"]["records_out"],
                    "concurrency": stage["concurrency"]["current"],
                    "batch_size": stage["batch_size"]["current"],
                    "held_bytes": stage["memory"].get("held_bytes", 0),
                    "inflight_bytes": stage["memory"].get("inflight_bytes", 0),
                    "limit_changes": stage.get("controller", {}).get("limit_changes", 0),
                })


def brief(fig):
    keys = ["records_per_s", "peak_rss_mb", "final_batch_size", "final_concurrency",
            "latency_p99_ms"]
    parts = [f"{k}={fig[k]:.1f}" if isinstance(fig.get(k), float) else f"{k}={fig.get(k)}"
             for k in keys if k in fig]
    if "sink" in fig:
        s = fig["sink"]
        parts.append(f"p50={s['latency_p50_ms']}ms p99={s['latency_p99_ms']}ms "
                     f"sink_records={s['records']} dup={s['duplicates']}")
    return " ".join(parts)


def median_of(runs, path):
    """Median over repetitions of a figure, `path` being a key or a tuple of nested keys."""
    values = []
    for fig in runs:
        v = fig
        for k in path if isinstance(path, tuple) else (path,):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(v)
    return statistics.median(values) if values else None


def run_sluice_with_cpu(h, tag, spec, records):
    """h.run_sluice, plus the run's CPU time per record in fig["cpu_us_per_record"]: the
    launcher's user + system time, with the plugin-host children it reaped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    fig = h.run_sluice(tag, spec)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    fig["cpu_us_per_record"] = cpu_s * 1e6 / records
    return fig


def arm_summary(runs, extra_paths=()):
    out = {
        "records_per_s": median_of(runs, "records_per_s"),
        "peak_rss_mb": median_of(runs, "peak_rss_mb"),
        "repetitions": len(runs),
        "records_per_s_each": [round(r.get("records_per_s") or 0, 1) for r in runs],
    }
    for key, path in extra_paths:
        out[key] = median_of(runs, path)
    return out


def check(name, value, op, target):
    ok = None
    if value is not None:
        ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return {"name": name, "value": None if value is None else round(value, 4), "op": op,
            "target": target, "pass": ok}


def ratio(a, b):
    return a / b if a is not None and b else None


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "cpu": cpu, "loadavg_at_start": [round(x, 2) for x in load]}


def generator(**options):
    return {"type": "generator", **options}


# ---- the benchmarks ------------------------------------------------------------------------


def bench_pipeline(h):
    count = 500_000 if h.quick else 5_000_000
    spec = {"name": "bench_pipeline", "source": generator(count=count), "sink": {"type": "null"}}
    runs = h.interleaved("pipeline", {
        "runtime": lambda tag: h.run_sluice(tag, json.loads(json.dumps(spec))),
        "plain_loop": lambda tag: h.run_plain_loop(tag, json.loads(json.dumps(spec))),
    }, h.reps(3, 3))
    arms = {
        "runtime": arm_summary(runs["runtime"], [("final_batch_size", "final_batch_size")]),
        "plain_loop": arm_summary(runs["plain_loop"], [("batch_size", "batch_size")]),
    }
    checks = [check("runtime_vs_plain_loop",
                    ratio(arms["runtime"]["records_per_s"], arms["plain_loop"]["records_per_s"]),
                    ">=", 0.9)]
    config = {"records": count, "pipeline": "generator -> null",
              "plain_loop": "the same plugins through their C tables in one thread, batch = "
                            "max_batch_size (what the runtime grows to)"}
    return arms, checks, config, runs


def bench_overhead(h):
    count = 500_000 if h.quick else 5_000_000
    transforms = [
        {"type": "fields", "add": {"region": "eu"}},
        {"type": "fields", "rename": {"seq": "sequence"}},
        {"type": "fields", "drop": ["ts"]},
    ]
    fixed = {"adaptive_batching": False, "batch_size": 1000, "min_batch_size": 1000,
             "max_batch_size": 1000, "adaptive_concurrency": False}

    def spec(performance):
        return {"name": "bench_overhead", "source": generator(count=count),
                "transforms": transforms, "sink": {"type": "null"},
                "performance": {**fixed, **performance}}

    one = {"concurrency": 1, "min_concurrency": 1, "max_concurrency": 1}
    two = {"concurrency": 2, "min_concurrency": 1, "max_concurrency": 2, "ordering": "none"}
    runs = h.interleaved("overhead", {
        "runtime_1_worker": lambda tag: h.run_sluice(tag, spec(one)),
        "runtime_2_workers": lambda tag: h.run_sluice(tag, spec(two)),
        "plain_loop": lambda tag: h.run_plain_loop(tag, spec(one)),
    }, h.reps(3, 3))
    arms = {a: arm_summary(r) for a, r in runs.items()}
    loop = arms["plain_loop"]["records_per_s"]
    checks = [
        check("runtime_1_worker_vs_plain_loop",
              ratio(arms["runtime_1_worker"]["records_per_s"], loop), ">=", 0.95),
        check("runtime_2_workers_vs_plain_loop",
              ratio(arms["runtime_2_workers"]["records_per_s"], loop), ">=", 1.75),
    ]
    config = {"records": count, "pipeline": "generator -> fields add -> fields rename -> "
              "fields drop -> null", "batch_size": 1000,
              "two_workers": "ordering none, concurrency 2 fixed"}
    return arms, checks, config, runs


def bench_isolation(h):
    """The JSON transform in process vs in a `sluice plugin-host` child (issue 16); and, for
    information, the generator source in a child (its polls crossing instead), and both
    transform arms again at a fixed concurrency of 2 (the same settings in both: two workers'
    batches, which in a child overlap only outside the child's one call at a time).

    Five rounds of the full run (three quick), the arms interleaved in each round (the order
    rotated), medians per arm. The machine is shared: CPU time per record is measured too (it
    moves far less with load than records/s), and each round's own process/in-process ratio."""
    count = 500_000 if h.quick else 5_000_000
    batch = 1000
    fixed = {"adaptive_batching": False, "batch_size": batch, "min_batch_size": batch,
             "max_batch_size": batch, "adaptive_concurrency": False, "concurrency": 1,
             "min_concurrency": 1, "max_concurrency": 1}

    two = {**fixed, "concurrency": 2, "min_concurrency": 2, "max_concurrency": 2}

    def spec(isolation, source_isolation="none", performance=None):
        return {"name": "bench_isolation",
                "source": generator(count=count, isolation=source_isolation),
                "transforms": [{**JSON_TRANSFORM, "isolation": isolation}],
                "sink": {"type": "null"}, "performance": performance or fixed}

    def with_cpu(tag, run_spec):
        return run_sluice_with_cpu(h, tag, run_spec, count)

    def isolated(tag, stage, run_spec):
        fig = with_cpu(tag, run_spec)
        # The proxy's own counters (in the stats file): what each call cost beyond the plugin's
        # time in the child: both crossings, the socket round trip, the copies.
        stats = json.loads((h.work_dir / f"{tag}.stats.json").read_text())
        for pipeline in stats["pipelines"].values():
            for st in pipeline["stages"].values():
                extra = st.get("extra", {})
                calls = extra.get(f"bench_isolation.{stage}.isolation.batches")
                total = extra.get(f"bench_isolation.{stage}.isolation.crossing_us")
                if calls:
                    fig["per_batch_crossing_us"] = total / calls
                    fig["records_per_call"] = count / calls
        return fig

    runs = h.interleaved("isolation", {
        "in_process": lambda tag: with_cpu(tag, spec("none")),
        "process": lambda tag: isolated(tag, "transform0", spec("process")),
        "source_process": lambda tag: isolated(tag, "source", spec("none", "process")),
        "in_process_2": lambda tag: with_cpu(tag, spec("none", performance=two)),
        "process_2": lambda tag: isolated(tag, "transform0", spec("process", performance=two)),
    }, h.reps(5, 3))
    cpu = [("cpu_us_per_record", "cpu_us_per_record")]
    crossing = cpu + [("per_batch_crossing_us", "per_batch_crossing_us"),
                      ("records_per_call", "records_per_call")]
    arms = {"in_process": arm_summary(runs["in_process"], cpu),
            "process": arm_summary(runs["process"], crossing),
            "source_process": arm_summary(runs["source_process"], crossing),
            "in_process_2": arm_summary(runs["in_process_2"], cpu),
            "process_2": arm_summary(runs["process_2"], crossing)}
    inside = arms["in_process"]["records_per_s"]
    outside = arms["process"]["records_per_s"]
    checks = [check("process_vs_in_process", ratio(outside, inside), ">=", 0.75)]
    per_round = [ratio(p.get("records_per_s"), i.get("records_per_s"))
                 for p, i in zip(runs["process"], runs["in_process"])]
    config = {"records": count, "pipeline": "generator -> fields (add) -> null",
              "batch_size": batch, "concurrency": 1,
              "ratio": ratio(outside, inside),
              "ratio_each_round": [round(r, 3) for r in per_round if r is not None],
              "cpu_ratio": ratio(arms["process"]["cpu_us_per_record"],
                                 arms["in_process"]["cpu_us_per_record"]),
              "source_ratio": ratio(arms["source_process"]["records_per_s"], inside),
              "ratio_concurrency_2": ratio(arms["process_2"]["records_per_s"],
                                           arms["in_process_2"]["records_per_s"]),
              "per_batch_crossing_us": "per isolated call (a transform's batch, a source's poll): "
                                       "the host's time for the call less the plugin's time in "
                                       "the child (median of the runs)",
              "cpu_us_per_record": "user + system CPU of the run (the launcher and its "
                                   "plugin-host children) per record, median of the runs"}
    return arms, checks, config, runs


def static_performance(batch, concurrency, linger_ms=None):
    p = {"adaptive_batching": False, "batch_size": batch, "min_batch_size": batch,
         "max_batch_size": batch, "adaptive_concurrency": False, "concurrency": concurrency,
         "min_concurrency": 1, "max_concurrency": concurrency}
    if linger_ms is not None:
        p["linger_ms"] = linger_ms
    return p


# The adaptive arm may move over the same ranges the static sweep covers (batch 10..5000,
# concurrency 1..16): the layer searches the space the sweep enumerates.
ADAPTIVE_PERFORMANCE = {"adaptive_batching": True, "adaptive_concurrency": True,
                        "min_batch_size": 10, "max_batch_size": 5000,
                        "min_concurrency": 1, "max_concurrency": 16}


def sweep_arms(h, make_spec, seconds):
    arms = {}
    for b in BATCHES:
        for c in CONCURRENCIES:
            arms[f"static_b{b}_c{c}"] = (
                lambda tag, b=b, c=c: h.run_sluice(tag, make_spec(static_performance(b, c)),
                                                   stop_after_s=seconds))
    arms["adaptive"] = lambda tag: h.run_sluice(tag, make_spec(dict(ADAPTIVE_PERFORMANCE)),
                                                stop_after_s=seconds)
    return arms


def sweep_results(runs):
    extra = [("final_batch_size", "final_batch_size"), ("final_concurrency", "final_concurrency")]
    arms = {a: arm_summary(r, extra) for a, r in runs.items()}
    statics = {a: v for a, v in arms.items() if a.startswith("static_")}
    best = max(statics, key=lambda a: statics[a]["records_per_s"] or 0)
    arms["static_default"] = dict(arms["static_b100_c1"], alias_of="static_b100_c1")
    return arms, best


def bench_adaptive(h):
    seconds = 3 if h.quick else 10

    def spec(performance):
        return {"name": "bench_adaptive", "source": generator(),
                "transforms": [JSON_TRANSFORM],
                "sink": {"type": "latency", **SINK_COST}, "performance": performance}

    runs = h.interleaved("adaptive", sweep_arms(h, spec, seconds), h.reps(3, 1))
    arms, best = sweep_results(runs)
    adaptive = arms["adaptive"]["records_per_s"]
    checks = [
        check("adaptive_vs_best_static", ratio(adaptive, arms[best]["records_per_s"]), ">=", 0.9),
        check("adaptive_vs_static_default",
              ratio(adaptive, arms["static_default"]["records_per_s"]), ">=", 1.5),
    ]
    config = {"seconds_per_run": seconds, "best_static": best,
              "pipeline": "generator (unbounded) -> fields add (JSON parse/add/serialize) -> "
                          "latency sink", "sink": SINK_COST,
              "static_arms": "adaptive_batching/concurrency off, min=max=batch_size, "
                             "max_concurrency=concurrency; other settings default",
              "adaptive_arm": "adaptive_batching and adaptive_concurrency on over the sweep's "
                              "ranges (batch 10..5000, concurrency 1..16), defaults otherwise",
              "records_per_s": "delivered / the run's seconds from the summary line; a run is "
                               "stopped with SIGINT after seconds_per_run and drains"}
    return arms, checks, config, runs


def bench_latency(h):
    seconds = 6 if h.quick else 30

    def spec(performance):
        return {"name": "bench_latency", "source": generator(rate=2000),
                "transforms": [JSON_TRANSFORM],
                "sink": {"type": "probe", **SINK_COST}, "performance": performance}

    runs = h.interleaved("latency", {
        "adaptive": lambda tag: h.run_sluice(tag, spec(dict(ADAPTIVE_PERFORMANCE)),
                                             stop_after_s=seconds, probe=True),
        "static_batch1000_linger1000": lambda tag: h.run_sluice(
            tag, spec(static_performance(1000, 1, linger_ms=1000)), stop_after_s=seconds,
            probe=True),
    }, h.reps(3, 1))
    extra = [("p50_ms", ("sink", "latency_p50_ms")), ("p90_ms", ("sink", "latency_p90_ms")),
             ("p99_ms", ("sink", "latency_p99_ms")), ("max_ms", ("sink", "latency_max_ms"))]
    arms = {a: arm_summary(r, extra) for a, r in runs.items()}
    a99, s99 = arms["adaptive"]["p99_ms"], arms["static_batch1000_linger1000"]["p99_ms"]
    cut = 1 - a99 / s99 if a99 is not None and s99 else None
    checks = [check("p99_cut_vs_static_batch1000", cut, ">=", 0.6)]
    config = {"seconds_per_run": seconds, "offered_records_per_s": 2000,
              "pipeline": "generator (rate 2000) -> fields add -> probe sink (benchkit)",
              "sink": SINK_COST,
              "latency": "record timestamp (generator, wall clock, ms) to the end of the sink's "
                         "put, histogram of 0.1 ms buckets; timestamps are whole ms, so figures "
                         "may read up to 1 ms high",
              "static_arm": "batch 1000 fixed, linger_ms 1000, concurrency 1 fixed"}
    return arms, checks, config, runs


def bench_memory(h):
    cap = 20_000
    limit = 128
    # Arm -> (records, payload bytes, performance): the same limit whatever the record size.
    shapes = {
        "backpressure_on": (100_000 if h.quick else 600_000, 1000, {}),
        "backpressure_off": (100_000 if h.quick else 600_000, 1000,
                             {"backpressure": False, "memory_control": False}),
        "records_64kb": (3_000 if h.quick else 20_000, 64 << 10, {}),
        "records_1mb": (300 if h.quick else 2_000, 1 << 20, {}),
    }

    def spec(count, payload, performance):
        return {"name": "bench_memory",
                "source": generator(count=count, payload_size=payload),
                "sink": {"type": "probe", "capacity_rps": cap},
                "performance": {"memory_limit_mb": limit, **performance}}

    runs = h.interleaved("memory", {
        arm: (lambda tag, shape=shape: h.run_sluice(tag, spec(*shape), probe=True))
        for arm, shape in shapes.items()
    }, h.reps(1, 1))
    extra = [("sink_records", ("sink", "records")), ("sink_duplicates", ("sink", "duplicates")),
             ("stage_peak_memory_mb", "stage_peak_memory_mb")]
    arms = {a: arm_summary(r, extra) for a, r in runs.items()}
    for a, rs in runs.items():
        # Lost = offsets never seen at the sink: count minus the distinct records it saw.
        count = shapes[a][0]
        lost = [count - (r["sink"]["records"] - r["sink"]["duplicates"]) for r in rs]
        arms[a]["records"] = count
        arms[a]["payload_size"] = shapes[a][1]
        arms[a]["sink_lost_each"] = lost
        arms[a]["sink_lost"] = max(lost)
        arms[a]["sink_duplicates"] = max(r["sink"]["duplicates"] for r in rs)
        arms[a]["sink_records_per_s_active"] = statistics.median(
            r["sink"]["records"] / r["sink"]["first_to_last_put_s"] for r in rs
            if r["sink"]["first_to_last_put_s"] > 0) if rs else None
    on = arms["backpressure_on"]
    checks = [check("throughput_vs_cap", ratio(on["records_per_s"], cap), ">=", 0.95)]
    for a in ("backpressure_on", "records_64kb", "records_1mb"):
        prefix = "" if a == "backpressure_on" else f"{a}_"
        checks += [
            check(f"{prefix}peak_rss_mb", arms[a]["peak_rss_mb"], "<=", limit),
            check(f"{prefix}records_lost", arms[a]["sink_lost"], "==", 0),
            check(f"{prefix}records_duplicated", arms[a]["sink_duplicates"], "==", 0),
        ]
    config = {"records": {a: shape[0] for a, shape in shapes.items()},
              "payload_size": {a: shape[1] for a, shape in shapes.items()},
              "capacity_rps": cap, "memory_limit_mb": limit,
              "pipeline": "generator (as fast as polled, bounded by count) -> probe sink "
                          "(benchkit; capacity cap, counts distinct offsets)",
              "backpressure_off": "performance backpressure: false and memory_control: false",
              "records_64kb_1mb": "large records under the same limit, defaults otherwise: peak "
                                  "RSS must stay under the limit with nothing lost",
              "records_per_s": "delivered / the run's seconds (summary line), start-up included"}
    return arms, checks, config, runs


# The shifting sink (issue 17): the sink's capacity binds, not the CPU. Its cost is waiting (it
# sleeps, like a remote system), and past each phase's knee every call gets dearer, so capacity
# per call falls. The phases' best settings differ: A is cheap per call with few calls at once, B
# dear per call with many. Per-record costs put each phase's best static point near 33k records/s,
# well under the ~320k records/s the generator and JSON transform reach on two cores.
SHIFT_PHASES = {
    "A": {"batch_cost_ms": 2, "record_cost_us": 120, "knee": 4},
    "B": {"batch_cost_ms": 50, "record_cost_us": 480, "knee": 16},
}
RIVALS = ["vector_arc", "gradient2", "vegas", "seed"]
CONTROLLERS = ["sluice"] + RIVALS


def shift_timing(h):
    """(seconds per whole run, seconds per phase, seconds per per-phase static run)."""
    return (16, 4, 3) if h.quick else (60, 10, 4)


def sink_spec(model, **extra):
    return {"type": "latency", "measure_latency": True, **model, **extra}


def phased_sink(phases, phase_s, **extra):
    """A latency sink that runs `phases` (a list of cost models) in turn, phase_s each, cycling."""
    listed = [{"after_ms": i * phase_s * 1000, **m, **extra} for i, m in enumerate(phases)]
    return sink_spec(phases[0], phases=listed, phase_cycle_ms=len(phases) * phase_s * 1000,
                     **extra)


def sink_pipeline(name, sink, performance):
    # Ordering none, in every arm: the modelled remote system needs no order, and with per-key
    # lanes a batch holds every lane it takes records from, so a few large batches would hold all
    # lanes and cap the batches in flight far below the knee whatever the limit.
    return {"name": name, "source": generator(), "transforms": [JSON_TRANSFORM], "sink": sink,
            "performance": {**performance, "ordering": "none"}}


def phase_sweep(h, seconds):
    """Every static point in each phase's sink alone: {phase: {arm: records/s}}, and the runs."""
    arms = {}
    for phase, model in SHIFT_PHASES.items():
        for b in BATCHES:
            for c in CONCURRENCIES:
                arms[f"{phase}_static_b{b}_c{c}"] = (
                    lambda tag, model=model, b=b, c=c: h.run_sluice(
                        tag, sink_pipeline("bench_shift", sink_spec(model),
                                           static_performance(b, c)), stop_after_s=seconds))
    runs = h.interleaved("shift-phase", arms, 1)
    rates = {phase: {} for phase in SHIFT_PHASES}
    for arm, figs in runs.items():
        phase, point = arm.split("_", 1)
        rates[phase][point] = median_of(figs, "records_per_s")
    return rates, runs


def phase_best(rates):
    return {phase: max(points, key=lambda p: points[p] or 0) for phase, points in rates.items()}


def bench_shift(h):
    seconds, phase_s, probe_s = shift_timing(h)
    rates, sweep_runs = phase_sweep(h, probe_s)
    best = phase_best(rates)
    # Over the whole run each phase takes the same time, so a static point delivers the mean of
    # its phase rates (less the transitions): the candidates for the whole-run check.
    predicted = {p: statistics.mean(rates[ph][p] or 0 for ph in SHIFT_PHASES)
                 for p in rates["A"]}
    candidates = sorted(predicted, key=predicted.get, reverse=True)[:3]
    sink = phased_sink(list(SHIFT_PHASES.values()), phase_s)
    whole = {p: (lambda tag, p=p: h.run_sluice(
        tag, sink_pipeline("bench_shift", sink, static_performance(
            *[int(x[1:]) for x in p.split("_")[1:]])), stop_after_s=seconds))
        for p in candidates}
    whole["adaptive"] = lambda tag: h.run_sluice(
        tag, sink_pipeline("bench_shift", sink, dict(ADAPTIVE_PERFORMANCE)), stop_after_s=seconds,
        timeline=True)
    runs = h.interleaved("shift", whole, h.reps(1, 1))
    extra = [("final_batch_size", "final_batch_size"), ("final_concurrency", "final_concurrency"),
             ("latency_p99_ms", "latency_p99_ms")]
    arms = {a: arm_summary(r, extra) for a, r in runs.items()}
    for p in candidates:
        arms[p]["predicted_records_per_s"] = round(predicted[p], 1)
    best_whole = max(candidates, key=lambda p: arms[p]["records_per_s"] or 0)
    adaptive = arms["adaptive"]["records_per_s"]
    checks = [
        check("phases_best_static_differ", 1.0 if best["A"] != best["B"] else 0.0, "==", 1.0),
        check("adaptive_vs_best_static", ratio(adaptive, arms[best_whole]["records_per_s"]),
              ">=", 1.1),
    ]
    config = {
        "seconds_per_run": seconds, "phase_seconds": phase_s, "phases": SHIFT_PHASES,
        "phase_best_static": {ph: {"point": best[ph], "records_per_s": rates[ph][best[ph]],
                                   "in_other_phase": {o: rates[o][best[ph]]
                                                      for o in SHIFT_PHASES if o != ph}}
                              for ph in SHIFT_PHASES},
        "phase_static_records_per_s": rates,
        "predicted_whole_run_records_per_s": {p: round(v, 1) for p, v in predicted.items()},
        "best_static_whole_run": best_whole,
        "adaptive_vs_best_static": ratio(adaptive, arms[best_whole]["records_per_s"]),
        "what_was_run": f"every static point ({len(BATCHES)} batch sizes x {len(CONCURRENCIES)} "
                        f"concurrencies) in each phase's sink alone for {probe_s} s; the {len(candidates)} "
                        f"static points with the best mean of their phase rates, and adaptive, on "
                        f"the shifting sink for {seconds} s (phases switch every {phase_s} s)",
        "pipeline": "generator (unbounded) -> fields add (JSON) -> latency sink (sleeps its cost)",
        "cost": "per call: batch_cost_ms + n * record_cost_us, x (active/knee)^2 past the knee",
    }
    return arms, checks, config, {"phase_sweep": sweep_runs, **runs}


def settle_report(timeline, segments, interval_s=1.0):
    """Per phase segment: intervals until throughput holds >= 85% of the reference, reversals
    of the concurrency limit after that, and the limit at its end.

    segments: [(start_s, end_s, reference records/s, label)]. Throughput per interval is the
    change of records_out between two samples of the stats file (written every second).
    """
    points = [(x["t"], x["records_out"], x["concurrency"]) for x in timeline]
    rates = [((t0 + t1) / 2, (r1 - r0) / (t1 - t0), c1)
             for (t0, r0, _), (t1, r1, c1) in zip(points, points[1:]) if t1 > t0]
    out = []
    for start, end, reference, label in segments:
        inside = [(t, r, c) for t, r, c in rates if start <= t < end]
        settled = None
        for i in range(len(inside) - 1):
            if all(r >= 0.85 * reference for _, r, _ in inside[i:i + 2]):
                settled = i + 1
                break
        reversals, last = 0, 0
        after = inside[settled - 1:] if settled else []
        for (_, _, c0), (_, _, c1) in zip(after, after[1:]):
            d = (c1 > c0) - (c1 < c0)
            if d and last and d != last:
                reversals += 1
            last = d or last
        mean = statistics.mean(r for _, r, _ in inside) if inside else None
        out.append({"phase": label, "start_s": start, "reference_records_per_s": reference,
                    "mean_records_per_s": None if mean is None else round(mean, 1),
                    "settle_intervals": settled, "reversals_after_settle": reversals,
                    "limit_at_end": inside[-1][2] if inside else None})
    return out


def reference_rates(h, probe_s):
    """Each phase's best static records/s: from shift.json if the shift benchmark ran, else a
    reduced sweep here."""
    shift = h.out_dir / "shift.json"
    if shift.exists():
        best = json.loads(shift.read_text())["config"].get("phase_best_static")
        if best:
            return {ph: v["records_per_s"] for ph, v in best.items()}, "shift.json"
    rates, _ = phase_sweep(h, probe_s)
    return {ph: max(v.values()) for ph, v in rates.items()}, "own sweep"


def controller_arms(h, name, sink, seconds):
    def arm(tag, c):
        try:
            return h.run_sluice(
                tag, sink_pipeline(name, sink, {**ADAPTIVE_PERFORMANCE, "controller": c}),
                stop_after_s=seconds, timeline=True)
        except RuntimeError as e:
            # An arm that wrecks the run (e.g. puts stuck past call_timeout_ms) is a result too.
            return {"records_per_s": None, "failed": str(e), "seconds": seconds, "timeline": []}
    return {c: (lambda tag, c=c: arm(tag, c)) for c in CONTROLLERS}


def controller_summary(runs, segments_of):
    extra = [("final_batch_size", "final_batch_size"), ("final_concurrency", "final_concurrency"),
             ("latency_p50_ms", "latency_p50_ms"), ("latency_p99_ms", "latency_p99_ms")]
    arms = {}
    for a, figs in runs.items():
        arms[a] = arm_summary(figs, extra)
        fig = figs[0]
        timeline = fig.get("timeline", [])
        changes = (fig.get("controller") or {}).get("limit_changes", 0)
        arms[a]["limit_changes_per_minute"] = round(changes / (fig["seconds"] / 60), 1)
        arms[a]["peak_held_bytes"] = max((x["held_bytes"] for x in timeline), default=None)
        arms[a]["peak_inflight_bytes"] = max((x["inflight_bytes"] for x in timeline),
                                             default=None)
        arms[a]["phases"] = settle_report(timeline, segments_of(fig["seconds"]))
        if fig.get("failed"):
            arms[a]["failed"] = fig["failed"]
        arms[a]["last_decisions"] = [d["reason"] for d in
                                     (fig.get("controller") or {}).get("decisions", [])[-5:]]
    return arms


def segments(order, refs, phase_s, seconds):
    return [(i * phase_s, (i + 1) * phase_s, refs[order[i % len(order)]], order[i % len(order)])
            for i in range(int(seconds // phase_s))]


def versus_rivals(arms):
    rival = max(RIVALS, key=lambda a: arms[a]["records_per_s"] or 0)
    ours = arms["sluice"]
    p99_ratio = ratio(ours["latency_p99_ms"], arms[rival]["latency_p99_ms"])
    return rival, [
        check("sluice_vs_best_rival_records_per_s",
              ratio(ours["records_per_s"], arms[rival]["records_per_s"]), ">=", 1.05),
        check("sluice_p99_vs_best_rival_p99", p99_ratio, "<=", 1.1),
    ]


def bench_controllers(h):
    seconds, phase_s, probe_s = shift_timing(h)
    refs, refs_from = reference_rates(h, probe_s)
    sink = phased_sink(list(SHIFT_PHASES.values()), phase_s)
    runs = h.interleaved("controllers", controller_arms(h, "bench_controllers", sink, seconds),
                         h.reps(1, 1))
    order = list(SHIFT_PHASES)
    arms = controller_summary(runs, lambda _: segments(order, refs, phase_s, seconds))
    rival, checks = versus_rivals(arms)
    config = {"seconds_per_run": seconds, "phase_seconds": phase_s, "phases": SHIFT_PHASES,
              "best_rival": rival, "phase_reference_records_per_s": refs,
              "phase_reference_from": refs_from,
              "arms": "performance.controller = each; the rivals share sluice's batch sizer, "
                      "except seed (its own x0.9/x1.1 batch rule); ranges as the adaptive arm",
              "latency": "end-to-end record latency (generator timestamp to the end of the put) "
                         "measured in the latency sink, whole run",
              "settle": "intervals (1 s, the stats file's) from a phase's start until two in a "
                        "row deliver >= 85% of the phase's best static records/s"}
    return arms, checks, config, runs


# Faults: the same phases with +-30% jitter per call and 2% failed puts (retried), and between
# them a collapse: phase A at 10% capacity (every cost x10) for one phase, then recovery.
FAULT_ORDER = ["A", "B", "collapse", "A", "B", "A"]


def bench_faults(h):
    seconds, phase_s, probe_s = shift_timing(h)
    refs, refs_from = reference_rates(h, probe_s)
    collapse = {k: v * 10 if k != "knee" else v for k, v in SHIFT_PHASES["A"].items()}
    models = {**SHIFT_PHASES, "collapse": collapse}
    failure_rate, jitter = 0.02, 0.3
    sink = phased_sink([models[p] for p in FAULT_ORDER], phase_s, jitter=jitter,
                       failure_rate=failure_rate, seed=7)
    # A failed put pays its cost and is retried: the best static point delivers 2% less; the
    # collapse is phase A at a tenth of its capacity (same knee, so the same best point).
    fault_refs = {"A": refs["A"] * (1 - failure_rate), "B": refs["B"] * (1 - failure_rate),
                  "collapse": refs["A"] * (1 - failure_rate) / 10}
    runs = h.interleaved("faults", controller_arms(h, "bench_faults", sink, seconds),
                         h.reps(1, 1))
    arms = controller_summary(runs, lambda _: segments(FAULT_ORDER, fault_refs, phase_s, seconds))
    rival, checks = versus_rivals(arms)
    ours = arms["sluice"]
    settles = [p["settle_intervals"] for p in ours["phases"]]
    checks += [
        check("sluice_worst_settle_intervals",
              None if None in settles else max(settles), "<=", 20),
        check("sluice_max_reversals_per_phase",
              max(p["reversals_after_settle"] for p in ours["phases"]), "<=", 1),
    ]
    config = {"seconds_per_run": seconds, "phase_seconds": phase_s, "order": FAULT_ORDER,
              "models": models, "jitter": jitter, "failure_rate": failure_rate,
              "phase_reference_records_per_s": fault_refs, "phase_reference_from": refs_from,
              "best_rival": rival,
              "settle": "intervals (1 s) from a phase's start until two in a row deliver >= 85% "
                        "of the phase's best static records/s; null: never within the phase",
              "memory": "peak_held_bytes / peak_inflight_bytes: the stage's held and in-flight "
                        "record bytes, maximum over the stats file's samples"}
    return arms, checks, config, runs


def debezium_records(path, count):
    """Writes `count` Debezium change events of one table (JsonConverter {schema, payload} form,
    as a connector with schemas.enable writes them): 60% creates, 30% updates, 10% deletes."""
    def prim(t, field, optional=False):
        return {"type": t, "optional": optional, "field": field}
    row = {"type": "struct", "optional": True, "name": "dbserver1.inventory.customers.Value",
           "fields": [prim("int32", "id"), prim("string", "first_name"),
                      prim("string", "last_name"), prim("string", "email", True),
                      prim("string", "ssn", True), prim("double", "score", True)]}
    source = {"type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source",
              "field": "source",
              "fields": [prim("string", "version"), prim("string", "connector"),
                         prim("string", "name"), prim("int64", "ts_ms"), prim("string", "db"),
                         prim("string", "schema"), prim("string", "table"),
                         prim("int64", "lsn", True)]}
    schema = {"type": "struct", "optional": False, "name": "dbserver1.inventory.customers.Envelope",
              "version": 2, "fields": [{**row, "field": "before"}, {**row, "field": "after"},
                                       source, prim("string", "op"),
                                       prim("int64", "ts_ms", True)]}
    head = '{"schema":' + json.dumps(schema, separators=(",", ":")) + ',"payload":'
    with open(path, "w") as f:
        for i in range(count):
            r = {"id": i, "first_name": f"First{i % 977}", "last_name": f"Last{i % 613}",
                 "email": f"user{i}@example.com", "ssn": f"{i % 1000:03d}-55-{i % 10000:04d}",
                 "score": (i % 1000) / 8}
            op = "c" if i % 10 < 6 else "u" if i % 10 < 9 else "d"
            payload = {"before": None if op == "c" else r, "after": None if op == "d" else r,
                       "source": {"version": "3.6.1.Final", "connector": "postgresql",
                                  "name": "dbserver1", "ts_ms": 1700000000000 + i,
                                  "db": "inventory", "schema": "public", "table": "customers",
                                  "lsn": 1000 + i},
                       "op": op, "ts_ms": 1700000000100 + i}
            f.write(head + json.dumps(payload, separators=(",", ":")) + "}\n")


def bench_transforms(h):
    """unwrap -> ReplaceField -> InsertField -> MaskField -> RegexRouter over Debezium JSON: the
    debezium_smt and kafka_smt plugins in the runtime against Debezium's and Kafka's classes with
    JsonConverter in a warmed-up Java loop, both pinned to the same single core."""
    count = 100_000 if h.quick else 1_000_000
    topic = "dbserver1.inventory.customers"
    records = h.work_dir / f"transforms-{count}.jsonl"
    if not records.exists():
        debezium_records(records, count)
    # (sluice type, Java class, config): the same keys for both arms.
    chain = [
        ("unwrap", "io.debezium.transforms.ExtractNewRecordState",
         {"add.fields": "op,table", "delete.tombstone.handling.mode": "rewrite"}),
        ("replace_field", "org.apache.kafka.connect.transforms.ReplaceField$Value",
         {"exclude": "email", "renames": "first_name:name"}),
        ("insert_field", "org.apache.kafka.connect.transforms.InsertField$Value",
         {"static.field": "pipeline", "static.value": "bench", "topic.field": "src_topic"}),
        ("mask_field", "org.apache.kafka.connect.transforms.MaskField$Value", {"fields": "ssn"}),
        ("regex_router", "org.apache.kafka.connect.transforms.RegexRouter",
         {"regex": "dbserver1\\.inventory\\.(.*)", "replacement": "cdc.$1"}),
    ]
    offsets = h.work_dir / "transforms.offset"

    def sluice_arm(tag, transforms, fuse=True):
        offsets.unlink(missing_ok=True)
        spec = {"name": "bench_transforms",
                "source": {"type": "file", "path": str(records), "topic": topic,
                           "validate_json": False, "offset_file": str(offsets)},
                "transforms": transforms,
                "sink": {"type": "null"},
                "performance": {"concurrency": 1, "min_concurrency": 1, "max_concurrency": 1,
                                "adaptive_concurrency": False, "fuse_transforms": fuse}}
        # Under load a single-threaded arm gets its own share of the core: CPU says more.
        return run_sluice_with_cpu(h, tag, spec, count)

    stages = [{"type": t, "schemas.enable": True, **cfg} for t, _, cfg in chain]

    harness = Path(__file__).resolve().parents[1] / "reference" / "kafka-smt" / "harness"
    java_chain = json.dumps([{"class": c, "config": cfg} for _, c, cfg in chain])

    def java_arm(tag):
        r = h._spawn([str(harness), "bench", str(records), topic, str(min(count, 300_000)),
                      java_chain], tag)
        if r["exit"] != 0:
            raise RuntimeError(f"{tag}: the Java chain exited {r['exit']}; see {r['stderr_file']}")
        fig = json.loads(r["stdout"].strip().splitlines()[-1])
        fig["peak_rss_mb"] = r["peak_rss_mb"]
        return fig

    # One core each: every arm's process (all its threads, the JVM's JIT and GC too) runs on the
    # same single CPU, which the children inherit from this process.
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        runs = h.interleaved("transforms", {
            # Each SMT a stage of its own, as a user writes them: `sluice run` folds them into
            # one chain (performance.fuse_transforms, on by default).
            "sluice": lambda tag: sluice_arm(tag, stages),
            # The same stages kept apart: each parses and writes the record.
            "sluice_unfused": lambda tag: sluice_arm(tag, stages, fuse=False),
            # The same SMTs as steps of one `chain` stage: one parse, one write a record.
            "sluice_chain": lambda tag: sluice_arm(tag, [{
                "type": "chain", "schemas.enable": True,
                "steps": [{"type": t, **cfg} for t, _, cfg in chain]}]),
            "java": java_arm}, h.reps(3, 1))
    finally:
        os.sched_setaffinity(0, saved)
    arms = {a: arm_summary(r, [("cpu_us_per_record", "cpu_us_per_record")] if a != "java" else [])
            for a, r in runs.items()}
    java = arms["java"]["records_per_s"]
    checks = [check("sluice_vs_java_chain", ratio(arms["sluice"]["records_per_s"], java),
                    ">=", 3.0),
              check("sluice_chain_vs_java_chain",
                    ratio(arms["sluice_chain"]["records_per_s"], java), ">=", 3.0)]
    config = {"records": count, "record_bytes": records.stat().st_size // count,
              "chain": [{"sluice": t, "reference": c, "config": cfg} for t, c, cfg in chain],
              "sluice": "file source (validate_json false) -> the five SMTs as five stages "
                        "(schemas.enable), which sluice run folds into one chain -> null sink, "
                        "one worker; records/s from the run summary (file reading included)",
              "sluice_unfused": "as sluice, with performance.fuse_transforms false: five "
                                "stages, each parsing and writing each record",
              "sluice_chain": "as sluice, with the five SMTs as the steps of one `chain` "
                              "transform (kafka_smt), which parses and writes each record once",
              "java": "JsonConverter (schemas.enable) -> the chain -> JsonConverter, in one "
                      "thread over the records read into memory first, after a warm-up pass "
                      "over 300,000 of them; Debezium 3.6.1, Kafka 4.1.0",
              "cpu": "both arms pinned to one core (sched_setaffinity)",
              "cpu_us_per_record": "sluice arms: user + system CPU of the launcher run (start-up "
                                   "and file reading included) per record"}
    return arms, checks, config, runs


def bench_external(h, name):
    """kafka, cdc and cdc_postgres: their own helpers write run.sh; this only calls it."""
    script = Path(__file__).resolve().parent / EXTERNAL_SCRIPTS.get(name, f"{name}/run.sh")
    out = h.out_dir / f"{name}.json"
    if not script.exists():
        print(f"{name}: skipped ({script} does not exist)")
        return None
    env = dict(os.environ, SLUICE_BENCH_QUICK="1" if h.quick else "0")
    r = subprocess.run(["bash", str(script), str(h.build_dir), str(out)], env=env)
    if r.returncode != 0:
        print(f"{name}: {script} exited {r.returncode}")
    return out if out.exists() else None


BENCHMARKS = {
    "pipeline": bench_pipeline,
    "adaptive": bench_adaptive,
    "latency": bench_latency,
    "memory": bench_memory,
    "shift": bench_shift,
    "controllers": bench_controllers,
    "faults": bench_faults,
    "overhead": bench_overhead,
    "isolation": bench_isolation,
    "transforms": bench_transforms,
}
EXTERNAL = ["kafka", "kafka_file", "cdc", "cdc_postgres"]
EXTERNAL_SCRIPTS = {"cdc_postgres": "cdc/run_postgres.sh", "kafka_file": "kafka/run_file.sh"}


def print_table(result):
    print(f"\n== {result['benchmark']} ==")
    rows = []
    for arm, fig in result["arms"].items():
        cols = [arm, fmt(fig.get("records_per_s")), fmt(fig.get("peak_rss_mb"))]
        cols.append(" ".join(f"{k}={fmt(fig[k])}" for k in
                             ("p50_ms", "p99_ms", "final_batch_size", "final_concurrency",
                              "sink_lost", "sink_duplicates", "cpu_us_per_event", "writers")
                             if fig.get(k) is not None))
        rows.append(cols)
    widths = [max(len(r[i]) for r in rows + [["arm", "records/s", "peak MB", ""]])
              for i in range(3)]
    print(f"{'arm':<{widths[0]}}  {'records/s':>{widths[1]}}  {'peak MB':>{widths[2]}}")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    for c in result["checks"]:
        mark = {True: "PASS", False: "MISS", None: "n/a"}[c["pass"]]
        print(f"  {mark}  {c['name']}: {c['value']} {c['op']} {c['target']}")


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--out", required=True, help="folder for NAME.json")
    parser.add_argument("--reps", type=int, default=0, help="override the repetitions")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS) + EXTERNAL
    unknown = [n for n in names if n not in BENCHMARKS and n not in EXTERNAL]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: "
                     f"{', '.join(list(BENCHMARKS) + EXTERNAL)}")
    h = Harness(args)
    failures = 0
    for name in names:
        if name in EXTERNAL:
            bench_external(h, name)
            continue
        print(f"{name}: running{' (quick)' if h.quick else ''}", flush=True)
        started = time.time()
        try:
            arms, checks, config, runs = BENCHMARKS[name](h)
        except RuntimeError as e:
            print(f"{name}: FAILED: {e}", file=sys.stderr)
            failures += 1
            continue
        result = {"benchmark": name, "machine": machine(), "quick": h.quick,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                  "duration_s": round(time.time() - started, 1), "config": config,
                  "arms": arms, "checks": checks, "runs": runs}
        (h.out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print_table(result)
        print(f"  -> {h.out_dir / (name + '.json')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
