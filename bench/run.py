#!/usr/bin/env python3
"""Benchmarks: titan-supervisor against PM2 and supervisord on the same machine, in the same
run, writing the `bench:engine` (W1-W4) and `bench:logs` (W5) sections of BENCHMARKS.md (and,
when named, `bench:containers` for C1/C2 and `bench:deploys` for N-switch, C2-switch,
C3-rollback). Python 3.11 standard library only.

    bench/setup.sh && python3 bench/run.py [--only W1,W5] [--quick] [--out FILE]
    bench/setup.sh && python3 bench/run.py --only N-switch,C2-switch,C3-rollback

See bench/README.md for what each workload measures and how."""

import argparse
import datetime
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import containers, deploys, report, topology, workloads
from benchlib.procs import BenchError, sweep
from benchlib.supervisors import PM2, Supervisord, Titan

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / ".peers"

LABELS = {
    ("titan", "native"): "titan-supervisor — health-gated dependencies",
    ("pm2", "native"): "PM2 — ecosystem file order",
    ("pm2", "gate"): "PM2 — scripted gate (`pm2 start` per tier, poll ports)",
    ("supervisord", "native"): "supervisord — `priority` per tier",
    ("supervisord", "gate"): "supervisord — scripted gate (`supervisorctl start tN:*`, poll ports)",
    ("titan", "logs"): "titan-supervisor — rotation by rename, gzip thread",
    ("pm2", "logs"): "PM2 + pm2-logrotate as released (`compress true` has no effect)",
    ("pm2", "logs-fixed"): "PM2 + pm2-logrotate with the `compress` fix (keymetrics/pm2-logrotate#202)",
    ("supervisord", "logs"): "supervisord — rotation by rename, no compression",
}
ENGINE, LOGS, CONTAINERS = ("W1", "W2", "W3", "W4"), ("W5",), ("C1", "C2")
# the deploy workloads (run only when named); C2-SWITCH runs on the private dockerd as C1/C2
DEPLOYS = ("N-SWITCH", "C2-SWITCH", "C3-ROLLBACK")
DOCKER = CONTAINERS + ("C2-SWITCH",)
# docker-compose's healthcheck intervals in C1: the tightest dockerd accepts, and one with
# less exec load (each check is an exec in the container)
COMPOSE_INTERVALS = ("1ms", "100ms")
W3_PROCESS = {"titan": "`titan-supervisor run`",
              "pm2": "PM2 God daemon (not its service children)",
              "supervisord": "`supervisord`"}
W3_HEALTH = {"titan": "HTTP every 1 s", "pm2": "none (PM2 has none)",
             "supervisord": "none (supervisord has none)"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="W1,W2,W3,W4,W5",
                   help="workloads to run, e.g. W1,W5; the container workloads C1,C2 and the "
                   "deploy workloads N-switch,C2-switch,C3-rollback run only when named here")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report file")
    p.add_argument("--supervisors", default="titan,pm2,supervisord",
                   help="which supervisors to run (the report then holds only those)")
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument("--keep", action="store_true", help="keep the session directories")
    p.add_argument("--test-service", choices=("auto", "titan-supervisor", "titan-testsvc"),
                   default="auto", help="binary of the test service every supervisor runs "
                   "(auto: titan-testsvc when the build has it, else titan-supervisor)")
    args = p.parse_args()
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    bad = [w for w in args.only if w not in ENGINE + LOGS + CONTAINERS + DEPLOYS]
    if bad:
        p.error(f"unknown workload(s): {', '.join(bad)}")
    args.supervisors = [s.strip() for s in args.supervisors.split(",") if s.strip()]
    return args


def release_dir():
    return target_dir() / "release"


def build(static):
    """The release build: titan-supervisor, and the test service every supervisor runs; with
    `static`, also the statically linked binaries of the container workloads' test image."""
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True, timeout=1800)
    if static:
        containers.build_static(REPO)


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def service_binary(choice):
    """The test service's binary: the small titan-testsvc when the build has one (it starts
    faster and shares no pages with the supervisor), else titan-supervisor's test-service mode."""
    small = release_dir() / "titan-testsvc"
    if choice == "titan-testsvc" or (choice == "auto" and small.exists()):
        if not small.exists():
            raise SystemExit(f"{small} not built")
        return small
    return release_dir() / "titan-supervisor"


def summary(key, value):
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float))]
        if numbers:
            return f"{key}: median {statistics.median(numbers):.3f} max {max(numbers):.3f}"
        return f"{key}: {len(value)}"
    return f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"


class Runner:
    """Runs rows (supervisor x mode) of workloads, one session at a time, in a private temp dir."""

    def __init__(self, sups, base):
        self.sups, self.base, self.n = sups, Path(base), 0

    def sdir(self, tag):
        self.n += 1
        return self.base / f"{self.n:03d}-{tag}"

    def rows(self, modes):
        rows = []
        for sup in self.sups:
            for mode in modes:
                if mode in sup.modes:
                    rows.append({"sup": sup, "key": sup.key, "mode": mode,
                                 "label": LABELS[(sup.key, mode)], "runs": [], "error": None,
                                 "skipped": sup.why_not, "notes": []})
        return rows

    def measure(self, row, what, fn):
        """Runs fn(sdir) for a row unless the row is skipped or failed; keeps errors per row."""
        if row["skipped"] or row["error"]:
            return
        log(f"{what}: {row['label']}")
        try:
            result = fn(self.sdir(f"{what}-{row['key']}-{row['mode']}"))
        except BenchError as e:
            log(f"  failed: {e}")
            row["error"] = str(e)
            return
        for n in result.pop("notes", []):
            if n not in row["notes"]:
                row["notes"].append(n)
        row["runs"].append(result)
        log("  " + ", ".join(summary(k, v) for k, v in result.items() if not k.startswith("_")))

    def bringup_workload(self, name, graph, reps, timeout, memory):
        rows = self.rows(("native", "gate"))
        for rep in range(reps):
            for row in rows:
                self.measure(row, f"{name}#{rep + 1}", lambda d, row=row: workloads.bringup(
                    row["sup"], row["mode"], graph, d, timeout, memory))
        dependents = sum(1 for s in graph.services if s.deps)
        return {"ideal_s": graph.ideal_s, "reps": reps, "dependents": dependents, "rows": rows}

    def w2(self, kills):
        rows, graph = self.rows(("native",)), topology.w2_graph()
        for row in rows:
            self.measure(row, "W2", lambda d, row=row: workloads.restarts(row["sup"], graph, d,
                                                                         kills))
        return {"kills": kills, "rows": rows}

    def w3(self, seconds):
        rows, graph = self.rows(("native",)), topology.w3_graph()
        for row in rows:
            row["process"], row["health"] = W3_PROCESS[row["key"]], W3_HEALTH[row["key"]]
            self.measure(row, "W3", lambda d, row=row: workloads.idle(row["sup"], graph, d,
                                                                     seconds))
        return {"seconds": seconds, "rows": rows}

    def w5(self, reps):
        rows, flood = self.rows(("logs", "logs-fixed")), topology.w5_flood()
        for rep in range(reps):
            for row in rows:
                self.measure(row, f"W5#{rep + 1}", lambda d, row=row: workloads.flood(
                    row["sup"], row["mode"], flood, d, 300))
        return {"reps": reps, "flood": flood, "rows": rows}


def run_containers(args, runner, results, binary, meta):
    """C1/C2 on a private dockerd and registry, stopped on leaving whatever happens; fills
    meta with the versions and the image."""
    quick = args.quick
    static = containers.static_dir(target_dir())
    with containers.DockerEnv(REPO, static) as env:
        meta["versions"] = [Titan(binary, binary).version() + f" (commit {git_commit()})"] \
            + env.versions()
        meta["image"] = env.image
        log("; ".join(meta["versions"]))
        if "C1" in args.only:
            results["C1"] = containers.c1(env, binary, runner.sdir, 1 if quick else 3,
                                          COMPOSE_INTERVALS)
        if "C2" in args.only:
            results["C2"] = containers.c2(env, binary, runner.sdir, 5 if quick else 20,
                                          1 if quick else 3)
        if "C2-SWITCH" in args.only:
            results["C2-SWITCH"] = deploys.cswitch(env, binary, runner.sdir, 2 if quick else 4)


def run_deploys(args, runner, results, titan, pm2):
    """N-switch (titan-supervisor, and PM2 when selected and installed) and C3-rollback, on
    native services; C2-switch runs in run_containers."""
    names = [w for w in ("N-SWITCH", "C3-ROLLBACK") if w in args.only]
    if not names:
        return
    why = titan.unavailable()
    if why:
        raise SystemExit(f"N-switch/C3-rollback need `titan-supervisor run`: {why}")
    if "N-SWITCH" in names:
        results["N-SWITCH"] = deploys.nswitch(titan, pm2, runner.sdir, 4 if args.quick else 20)
    if "C3-ROLLBACK" in names:
        results["C3-ROLLBACK"] = deploys.rollback(titan, runner.sdir("C3-rollback"),
                                                  2 if args.quick else 5)


def git_commit():
    def git(*a):
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True).stdout
    sha = git("rev-parse", "--short", "HEAD").strip()
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def terminate(signum, _frame):
    raise SystemExit(128 + signum)    # unwinds through every finally: sessions clean up


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, terminate)
    wanted = [w for w in args.only if w in DOCKER]
    if wanted and containers.missing_tools():
        raise SystemExit("C1/C2/C2-switch need Debian's " + ", ".join(containers.missing_tools())
                         + " (run bench/setup.sh)")
    if not args.no_build:
        build(static=bool(wanted))
    binary, svc = release_dir() / "titan-supervisor", service_binary(args.test_service)
    log(f"test service: {svc.name} test-service")
    every = {"titan": Titan(binary, svc), "pm2": PM2(PEERS, svc),
             "supervisord": Supervisord(PEERS, svc)}
    sups, versions = [], []
    for key in args.supervisors:
        sup = every[key]
        sup.why_not = sup.unavailable()
        versions.append(f"{sup.label}: {sup.why_not}" if sup.why_not and key != "titan"
                        else sup.version())
        log(f"{sup.label}: {sup.why_not or 'available'}")
        sups.append(sup)

    quick = args.quick
    load_start = report.load_average()
    if float(load_start.split()[0]) > 0.5:
        log(f"load average {load_start}: something else is running, figures will be noisier")
    base = tempfile.mkdtemp(prefix="tsbench-")
    results, container_meta, container_error = {}, {}, None
    try:
        r = Runner(sups, base)
        if "W1" in args.only:
            results["W1"] = r.bringup_workload("W1", topology.w1_graph(), 2 if quick else 5, 30,
                                               False)
        if "W2" in args.only:
            results["W2"] = r.w2(10 if quick else 30)
        if "W3" in args.only:
            results["W3"] = r.w3(10.0 if quick else 30.0)
        if "W4" in args.only:
            results["W4"] = r.bringup_workload("W4", topology.w4_graph(), 1 if quick else 3, 120,
                                               True)
        if "W5" in args.only:
            results["W5"] = r.w5(1 if quick else 3)
        run_deploys(args, r, results, every["titan"],
                    every["pm2"] if "pm2" in args.supervisors else None)
        if wanted:
            try:
                run_containers(args, r, results, binary, container_meta)
            except BenchError as e:    # the environment itself: no row can be measured
                container_error = f"container workloads not measured: {e}"
                log(container_error)
    finally:
        left = sweep(base)
        if left:
            log(f"killed {len(left)} leftover process(es): {left}")
        if args.keep:
            log(f"session directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    cmd = "python3 bench/run.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    meta = {"command": cmd, "quick": quick, "commit": git_commit(), "machine": report.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": versions, "service": f"{svc.name} test-service", "load_start": load_start, "load_end": report.load_average()}
    if any(w in results for w in ENGINE):
        report.write(args.out, report.section(results, meta))
    if any(w in results for w in LOGS):
        report.write(args.out, report.logs_section(results, meta), report.LOGS_BEGIN,
                     report.LOGS_END)
    if any(w in results for w in CONTAINERS):
        meta = dict(meta, **container_meta, load_end=report.load_average())
        report.write(args.out, report.containers_section(results, meta),
                     report.CONTAINERS_BEGIN, report.CONTAINERS_END)
    if any(w in results for w in DEPLOYS):
        dmeta = dict(meta, **container_meta, load_end=report.load_average())
        titan_v = every["titan"].version() + f" (commit {meta['commit']})"
        pm2_v = [v for v in versions if v.startswith("PM2")] if "N-SWITCH" in results else []
        docker_v = container_meta.get("versions", [])[1:] if "C2-SWITCH" in results else []
        dmeta["versions"] = [titan_v] + pm2_v + docker_v
        report.write(args.out, report.deploys_section(results, dmeta),
                     report.DEPLOYS_BEGIN, report.DEPLOYS_END)
    log(f"wrote {args.out}")
    if container_error:
        raise SystemExit(container_error)


if __name__ == "__main__":
    main()
