#!/usr/bin/env python3
"""Kafka benchmark: topic -> sluice (pass-through) -> topic against the raw librdkafka floor.

With --suite kafka_file: topic -> sluice -> file (file sink, fsync none, one value per line)
against a raw librdkafka loop that consumes and writes the same lines (sluice-kafka-bench
to-file). The floor runs first in each round; its file's size is what the sluice arm must reach.
Each arm reports CPU seconds per record and cores used (CPU seconds / wall seconds).

Arms: floor (raw librdkafka), sluice (at-least-once, adaptive concurrency), exactly_once
(sluice with `delivery: exactly_once`: a transactional producer, offsets committed inside the
transaction), and a static sweep static_c1/c2/c4/c8 (at-least-once with adaptive_concurrency off
and concurrency 1/2/4/8), so the concurrency the controller settled on (read from the stats
file, with its decision trace) stands beside what each fixed concurrency gives.

Both arms read the same input topic (Debezium-like JSON, ~300 B, 8 partitions) from the start
with a fresh consumer group and write a fresh 8-partition output topic with an idempotent
acks=all producer. An arm's time runs from its process start until the output topic's end
offsets add up to the input count (watched by sluice-kafka-bench wait, which reads no
records). Arms alternate (floor, sluice, floor, sluice, ...) and the JSON holds the medians.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SUMMARY_RE = re.compile(
    r"pipeline (?P<name>\S+): (?P<records_in>\d+) records in, (?P<delivered>\d+) delivered, "
    r".*?; (?P<sink_records>\d+) written by the sink; (?P<seconds>[\d.]+) s, "
    r"(?P<records_per_s>[\d.]+) records/s; batch size (?P<batch_size>\d+), concurrency "
    r"(?P<concurrency>\d+), peak memory (?P<peak_memory_mb>[\d.]+) MB")
PARTITIONS = 8
TARGET_RATIO = 0.8
EXACTLY_ONCE_TARGET_RATIO = 0.7
TRANSACTION_TARGET_MS = 1000
STATIC_CONCURRENCY = (1, 2, 4, 8)
STATIC_ARMS = tuple(f"static_c{c}" for c in STATIC_CONCURRENCY)
ARMS = ("floor", "sluice", "exactly_once", *STATIC_ARMS)
FILE_ARMS = ("floor", "sluice")
# Each arm's medians in the JSON.
FIGURES = ("records_per_s", "peak_rss_mb", "cpu_seconds", "cpu_us_per_record", "cores_used",
           "final_concurrency", "final_batch_size")
# The adaptive arm is "far from" the best static point below this ratio.
NEAR_BEST_STATIC = 0.9
TRANSACTIONS_RE = re.compile(
    r"exactly-once: (?P<committed>\d+) transactions committed, (?P<aborted>\d+) aborted; "
    r"(?P<records_per_transaction>\d+) records and (?P<ms_per_transaction>\d+) ms per committed"
    r"(?:.*?settled at (?P<settled_size>\d+) records)?")


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def vm_hwm_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def process_cpu_seconds(pid):
    """utime + stime of a running process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tool_cpu_seconds(stdout):
    """The CPU seconds sluice-kafka-bench prints when it is done."""
    m = re.search(r"cpu_seconds ([\d.]+)", stdout or "")
    return float(m.group(1)) if m else None


def wait_for_size(path, size, proc, timeout_s=600):
    """Waits until PATH holds SIZE bytes; fails if PROC exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"sluice exited with {proc.returncode} before writing {path}")
        time.sleep(0.005)
    raise RuntimeError(f"{path} did not reach {size} bytes within {timeout_s} s")


class PeakRss(threading.Thread):
    """Samples a child's VmHWM (monotonic) until it exits; the last sample is its peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = None
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            v = vm_hwm_mb(self.pid)
            if v is not None:
                self.peak = v
            self.done.wait(0.1)

    def stop(self):
        v = vm_hwm_mb(self.pid)
        if v is not None:
            self.peak = v
        self.done.set()
        self.join()
        return self.peak


def check(name, value, target):
    return {"name": name, "value": value, "op": ">=", "target": target,
            "pass": None if value is None else value >= target}


def controller_figures(stats):
    """The sink stage's final concurrency and batch size, and its controller's decision trace,
    from a --stats-file JSON (written once more when the run ends)."""
    figures = {}
    for pipeline in stats.get("pipelines", {}).values():
        for stage in pipeline.get("stages", {}).values():
            figures["final_concurrency"] = stage["concurrency"]["current"]
            figures["final_batch_size"] = stage["batch_size"]["current"]
            figures["controller"] = stage.get("controller")
            # Why a put waits: the producer's local queue was full (each wait up to 10 ms), and
            # how long the source was paused because the sink stage's queue was full.
            figures["producer_queue_full_waits"] = sum(
                v for k, v in stage.get("extra", {}).items()
                if k.endswith("producer_queue_full_waits"))
            figures["source_paused_ms"] = stage.get("backpressure", {}).get("paused_ms_total")
    return figures


def concurrency_sweep(arms, runs):
    """The adaptive at-least-once arm beside the static concurrency points, with the decision
    trace of its last run (why it chose what it chose)."""
    static = {c: arms[f"static_c{c}"]["records_per_s"] for c in STATIC_CONCURRENCY}
    known = {c: v for c, v in static.items() if v}
    best = max(known, key=known.get) if known else None
    adaptive = arms["sluice"]["records_per_s"]
    ratio = round(adaptive / known[best], 4) if best and adaptive else None
    adaptive_runs = [r for r in runs if r["arm"] == "sluice"]

    def spread(arm):
        # The lowest and highest run of an arm: on a shared machine one arm's runs can differ by
        # more than the medians of two arms do, and then the sweep does not rank the points.
        values = [r["records_per_s"] for r in runs if r["arm"] == arm and r.get("records_per_s")]
        return [min(values), max(values)] if values else None

    return {
        "adaptive_records_per_s": adaptive,
        "adaptive_final_concurrency": arms["sluice"]["final_concurrency"],
        "adaptive_final_concurrency_runs": [r.get("final_concurrency") for r in adaptive_runs],
        "static_records_per_s": static,
        "static_records_per_s_range": {c: spread(f"static_c{c}") for c in STATIC_CONCURRENCY},
        "adaptive_records_per_s_range": spread("sluice"),
        "best_static_concurrency": best,
        "adaptive_vs_best_static": ratio,
        "adaptive_near_best_static": None if ratio is None else ratio >= NEAR_BEST_STATIC,
        "adaptive_controller_last_run": adaptive_runs[-1].get("controller") if adaptive_runs
        else None,
    }


def median_of(runs, arm, key):
    values = [r[key] for r in runs if r["arm"] == arm and r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


class Bench:
    def __init__(self, args):
        self.build_dir = Path(args.build_dir).resolve()
        self.out = Path(args.out).resolve()
        self.tool = str(Path(args.tool).resolve())
        self.bootstrap = args.bootstrap
        self.records = args.records
        self.records_default = args.records_default
        self.records_from = args.records_from
        self.reps = args.reps
        self.work = self.out.parent / "work" / "kafka"
        self.work.mkdir(parents=True, exist_ok=True)
        self.sluice = str(self.build_dir / "bin" / "sluice")
        self.plugin_dir = str(self.build_dir / "plugins-out")
        self.run_id = f"{os.getpid()}-{int(time.time())}"
        self.input = f"bench-in-{self.run_id}"

    def tool_run(self, *args, timeout=600):
        r = subprocess.run([self.tool, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"sluice-kafka-bench {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r.stdout

    def prepare(self):
        self.tool_run("create-topic", self.bootstrap, self.input, PARTITIONS)
        started = time.time()
        self.tool_run("produce", self.bootstrap, self.input, self.records)
        print(f"kafka: produced {self.records} records into {self.input} in "
              f"{time.time() - started:.1f} s", flush=True)

    def pipeline_yaml(self, out_topic, group, arm):
        path = self.work / f"{out_topic}.yaml"
        exactly_once = arm == "exactly_once"
        delivery = "\n    delivery: exactly_once" if exactly_once else ""
        performance = ""
        if arm in STATIC_ARMS:
            performance = ("\n    performance: {adaptive_concurrency: false, concurrency: "
                           f"{arm.removeprefix('static_c')}}}")
        transactional = (f"\n      transaction_target_ms: {TRANSACTION_TARGET_MS}"
                         if exactly_once else "")
        path.write_text(f"""pipelines:
  - name: kafka-passthrough{delivery}
    source:
      type: kafka
      bootstrap_servers: {self.bootstrap}
      group_id: {group}
      topics: [{self.input}]{transactional}
    sink:
      type: kafka
      bootstrap_servers: {self.bootstrap}
      topic: {out_topic}
      transactional_id: {group}{performance}
admin:
  enabled: false
""")
        return path

    def measure(self, arm, rep):
        out_topic = f"bench-out-{arm}-{rep}-{self.run_id}"
        group = f"bench-{arm}-{rep}-{self.run_id}"
        self.tool_run("create-topic", self.bootstrap, out_topic, PARTITIONS)
        log_path = self.work / f"{arm}-{rep}.log"
        is_sluice = arm != "floor"
        stats_path = self.work / f"{arm}-{rep}.stats.json"
        stats_path.unlink(missing_ok=True)
        if is_sluice:
            cmd = [self.sluice, "--plugin-path", self.plugin_dir, "run",
                   str(self.pipeline_yaml(out_topic, group, arm)), "--stats-file",
                   str(stats_path)]
        else:
            cmd = [self.tool, "copy", self.bootstrap, self.input, out_topic, group,
                   str(self.records)]
        with open(log_path, "w") as log:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
            rss = PeakRss(proc.pid)
            # Exactly once is through when the last transaction committed the input offsets.
            wait = (["wait-committed", self.bootstrap, group, self.input]
                    if arm == "exactly_once" else ["wait", self.bootstrap, out_topic])
            waited = subprocess.run([self.tool, *wait, str(self.records), "600"],
                                    capture_output=True, text=True)
            seconds = time.monotonic() - started
            peak = rss.stop() if is_sluice else None
            cpu = process_cpu_seconds(proc.pid) if is_sluice else None
            if is_sluice:
                proc.send_signal(signal.SIGTERM)
            try:
                stdout, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
            if not is_sluice:
                peak = rss.stop()
                cpu = tool_cpu_seconds(stdout)
        if waited.returncode != 0 or proc.returncode != 0:
            raise RuntimeError(f"{arm} run {rep}: exit {proc.returncode}, "
                               f"{waited.stderr.strip()} (log: {log_path})")
        run = self.run_figures(arm, rep, seconds, peak, cpu, stdout)
        if stats_path.exists():
            run.update(controller_figures(json.loads(stats_path.read_text())))
        t = TRANSACTIONS_RE.search(log_path.read_text())
        if t:
            run["transactions"] = {k: int(v) for k, v in t.groupdict().items() if v is not None}
        self.tool_run("delete-topic", self.bootstrap, out_topic)
        print(f"kafka: {arm} run {rep + 1}/{self.reps}: {run['records_per_s']:,.0f} records/s "
              f"in {seconds:.2f} s, {run['cpu_us_per_record']} us CPU per record, "
              f"{run['cores_used']} cores, peak RSS {run['peak_rss_mb']} MB"
              + (f", final concurrency {run['final_concurrency']}, "
                 f"{run['producer_queue_full_waits']:.0f} producer-queue-full waits, source "
                 f"paused {run['source_paused_ms']} ms" if "final_concurrency" in run else ""),
              flush=True)
        return run

    def run_figures(self, arm, rep, seconds, peak, cpu, stdout):
        """One run's figures: time, rate, memory, CPU (per record, cores) and sluice's summary."""
        run = {"arm": arm, "rep": rep, "seconds": round(seconds, 3),
               "records_per_s": round(self.records / seconds, 1),
               "peak_rss_mb": None if peak is None else round(peak, 1),
               "cpu_seconds": None if cpu is None else round(cpu, 3),
               "cpu_us_per_record": None if cpu is None else round(cpu / self.records * 1e6, 3),
               "cores_used": None if cpu is None else round(cpu / seconds, 3)}
        m = SUMMARY_RE.search(stdout or "")
        if m:
            run["summary"] = {k: float(v) if "." in v else (int(v) if v.isdigit() else v)
                              for k, v in m.groupdict().items()}
        return run

    def start(self, name):
        """The result's head; makes the input topic."""
        started = time.time()
        result = {"benchmark": name, "machine": machine(),
                  "quick": os.environ.get("SLUICE_BENCH_QUICK") == "1",
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))}
        self.prepare()
        return started, result

    def config(self, started, output, what):
        """The result's duration and config; WHAT continues the description of the run."""
        return {
            "duration_s": round(time.time() - started, 1),
            "config": {
                "records": self.records, "records_default": self.records_default,
                "records_from": self.records_from, "records_override_env":
                "SLUICE_KAFKA_BENCH_RECORDS", "partitions": PARTITIONS, "record_bytes": "~330",
                "reps": self.reps,
                "what_was_run": (
                    f"{self.records} Debezium-like JSON records on {PARTITIONS} partitions, "
                    f"topic -> arm -> new {output} per run, arms alternating floor/sluice, "
                    f"{self.reps} runs each, medians; " + what)}}

    def write(self, result):
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(result, indent=2) + "\n")

    def file_yaml(self, path, group):
        yaml = self.work / f"{group}.yaml"
        yaml.write_text(f"""pipelines:
  - name: kafka-file
    source:
      type: kafka
      bootstrap_servers: {self.bootstrap}
      group_id: {group}
      topics: [{self.input}]
    sink:
      type: file
      path: {path}
      fsync: none
admin:
  enabled: false
""")
        return yaml

    def measure_file(self, arm, rep):
        """One kafka_file run; the floor (first in each round) sets the bytes to wait for."""
        group = f"bench-file-{arm}-{rep}-{self.run_id}"
        path = self.work / f"{group}.jsonl"
        path.unlink(missing_ok=True)
        log_path = self.work / f"file-{arm}-{rep}.log"
        if arm == "sluice":
            cmd = [self.sluice, "--plugin-path", self.plugin_dir, "run",
                   str(self.file_yaml(path, group))]
        else:
            cmd = [self.tool, "to-file", self.bootstrap, self.input, str(path), group,
                   str(self.records)]
        with open(log_path, "w") as log:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
            rss = PeakRss(proc.pid)
            if arm == "sluice":
                wait_for_size(path, self.file_bytes, proc)
                seconds = time.monotonic() - started
                cpu = process_cpu_seconds(proc.pid)
                peak = rss.stop()
                proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=600)
            if arm == "floor":
                seconds = time.monotonic() - started
                peak = rss.stop()
                cpu = tool_cpu_seconds(stdout)
                self.file_bytes = path.stat().st_size
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        if proc.returncode != 0 or lines != self.records:
            raise RuntimeError(f"kafka_file {arm} run {rep}: exit {proc.returncode}, {lines} "
                               f"lines of {self.records} (log: {log_path})")
        path.unlink()
        run = self.run_figures(arm, rep, seconds, peak, cpu, stdout)
        print(f"kafka_file: {arm} run {rep + 1}/{self.reps}: {run['records_per_s']:,.0f} "
              f"records/s in {seconds:.2f} s, {run['cpu_us_per_record']} us CPU per record, "
              f"{run['cores_used']} cores", flush=True)
        return run

    def run_file(self):
        started, result = self.start("kafka_file")
        runs = [self.measure_file(arm, rep) for rep in range(self.reps) for arm in FILE_ARMS]
        self.tool_run("delete-topic", self.bootstrap, self.input)
        arms = {arm: {k: median_of(runs, arm, k) for k in FIGURES} for arm in FILE_ARMS}
        value = (round(arms["sluice"]["records_per_s"] / arms["floor"]["records_per_s"], 4)
                 if arms["floor"]["records_per_s"] else None)
        result.update(self.config(started, "file", (
                    "time = process start until the file "
                    "holds every line (floor: until it exits after writing them); floor = "
                    "sluice-kafka-bench to-file (one librdkafka consumer, values appended as "
                    "lines through a 1 MiB stdio buffer), sluice = kafka source -> file sink "
                    "(fsync none, format value) with default performance settings; CPU = user + "
                    "system seconds of the arm's process until its output was complete")))
        result.update({
            "arms": arms,
            "checks": [check("sluice_vs_raw_kafka_to_file", value, TARGET_RATIO)],
            "runs": runs,
        })
        self.write(result)
        print(f"kafka_file: sluice {arms['sluice']['records_per_s']} records/s "
              f"({arms['sluice']['cpu_us_per_record']} us CPU per record, "
              f"{arms['sluice']['cores_used']} cores), raw loop "
              f"{arms['floor']['records_per_s']} records/s ({arms['floor']['cpu_us_per_record']} "
              f"us, {arms['floor']['cores_used']} cores), ratio {value} (target >= "
              f"{TARGET_RATIO}) -> {self.out}", flush=True)

    def run(self):
        started, result = self.start("kafka")
        runs = []
        for rep in range(self.reps):
            for arm in ARMS:
                runs.append(self.measure(arm, rep))
        self.tool_run("delete-topic", self.bootstrap, self.input)

        arms = {arm: {k: median_of(runs, arm, k) for k in FIGURES} for arm in ARMS}
        transactions = [r["transactions"] for r in runs if "transactions" in r]
        if transactions:
            arms["exactly_once"]["transactions"] = {
                "transaction_target_ms": TRANSACTION_TARGET_MS,
                **{k: statistics.median(t[k] for t in transactions) for k in transactions[0]}}

        def ratio(a, b):
            if arms[a]["records_per_s"] and arms[b]["records_per_s"]:
                return round(arms[a]["records_per_s"] / arms[b]["records_per_s"], 4)
            return None
        value = ratio("sluice", "floor")
        eos_value = ratio("exactly_once", "sluice")
        result.update(self.config(started, "topic", (
                    "time = process start until the output "
                    "topic's end offsets reach the input count (exactly_once: until the group's "
                    "committed offsets do, i.e. the last transaction committed); floor = sluice-kafka-bench copy "
                    "(one librdkafka consumer + idempotent acks=all producer, linger.ms 5), "
                    "sluice = kafka source -> kafka sink with default performance settings, "
                    "exactly_once = the same with delivery: exactly_once and "
                    f"transaction_target_ms {TRANSACTION_TARGET_MS} (adaptive size); "
                    "static_cN = sluice at-least-once with adaptive_concurrency: false and "
                    "concurrency N (the sweep beside the adaptive arm; final concurrency and "
                    "the controller's decisions come from each run's --stats-file)")))
        sweep = concurrency_sweep(arms, runs)
        result.update({
            "arms": arms,
            "concurrency_sweep": sweep,
            "checks": [check("sluice_vs_librdkafka_floor", value, TARGET_RATIO),
                       check("exactly_once_vs_at_least_once", eos_value,
                             EXACTLY_ONCE_TARGET_RATIO)],
            "runs": runs,
        })
        self.write(result)
        print(f"kafka: sluice {arms['sluice']['records_per_s']} records/s "
              f"(peak RSS {arms['sluice']['peak_rss_mb']} MB), floor "
              f"{arms['floor']['records_per_s']} records/s, ratio {value} (target >= "
              f"{TARGET_RATIO}); exactly_once {arms['exactly_once']['records_per_s']} records/s, "
              f"{eos_value}x at-least-once (target >= {EXACTLY_ONCE_TARGET_RATIO}) -> {self.out}",
              flush=True)
        ranges = sweep["static_records_per_s_range"]
        static = ", ".join(f"c{c} {v} ({ranges[c][0]:.0f}-{ranges[c][1]:.0f})" if ranges[c]
                           else f"c{c} {v}" for c, v in sweep["static_records_per_s"].items())
        print(f"kafka: adaptive concurrency settled at {sweep['adaptive_final_concurrency']} "
              f"(runs: {sweep['adaptive_final_concurrency_runs']}), {sweep['adaptive_records_per_s']} "
              f"records/s; static sweep {static}; best static c{sweep['best_static_concurrency']}, "
              f"adaptive/best {sweep['adaptive_vs_best_static']}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--records-default", type=int, default=None,
                   help="the suite's default record count (run.sh: 1M kafka, 5M kafka_file)")
    p.add_argument("--records-from", default="default",
                   help="where --records came from: default or SLUICE_KAFKA_BENCH_RECORDS")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--suite", choices=("kafka", "kafka_file"), default="kafka")
    args = p.parse_args()
    bench = Bench(args)
    bench.run_file() if args.suite == "kafka_file" else bench.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
