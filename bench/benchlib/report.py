"""Turns the figures into the Markdown sections that BENCHMARKS.md holds between
`<!-- bench:engine -->` and `<!-- /bench:engine -->` (W1-W4) and between `<!-- bench:logs -->`
and `<!-- /bench:logs -->` (W5); the rest of the file is left as it is."""

import math
import os
import statistics
from pathlib import Path

BEGIN, END = "<!-- bench:engine -->", "<!-- /bench:engine -->"
LOGS_BEGIN, LOGS_END = "<!-- bench:logs -->", "<!-- /bench:logs -->"

TARGETS = {
    "W1": "ideal + 50 ms (≤ 1.250 s), 0 violations",
    "W2": "p50 ≤ 3 ms, p95 ≤ 5 ms",
    "W3": "≤ 6 MiB RSS, ≤ 0.1 CPU-s / 30 s",
    "W4": "ideal + 100 ms (≤ 2.100 s), 0 violations, ≤ 12 MiB RSS",
    "W5": "0 lost, 0 duplicated, no file over max_size, capture ≤ 1.5 × supervisord's",
}
W5_CAPTURE_RATIO = 1.5


def load_average():
    with open("/proc/loadavg") as f:
        return " / ".join(f.read().split()[:3])


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    distro = "?"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    return {"nproc": len(os.sched_getaffinity(0)), "model": model,
            "memory": f"{mem_kib / 1024 / 1024:.1f} GiB", "kernel": os.uname().release,
            "os": distro}


# --- statistics and formatting -----------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def secs(v):
    return f"{v:.3f} s"


def ms(v):
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def mib(kib):
    return "—" if kib is None else f"{kib / 1024:.1f} MiB"


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict(missed):
    """The titan-target cell from the list of criteria missed."""
    return "**met**" if not missed else "**missed**: " + ", ".join(missed)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return out


def unmeasured(row, width):
    why = row["skipped"] or f"failed: {row['error']}"
    text = f"not measured ({why})" if row["skipped"] else why
    return [row["label"], text] + [""] * (width - 2)


# --- the workloads -----------------------------------------------------------------------------

def signed_ms(v):
    return f"{v:+.0f} ms".replace("-", "−")


def bringup_rows(w, ideal, budget, with_memory):
    rows = []
    for row in w["rows"]:
        runs = row["runs"]
        if not runs:
            rows.append(unmeasured(row, 8 if with_memory else 7))
            continue
        up = statistics.median(r["bringup_s"] for r in runs)
        lo, hi = min(r["bringup_s"] for r in runs), max(r["bringup_s"] for r in runs)
        viol = [r["violations"] for r in runs]
        gate = [g for r in runs for g in r["gate_ms"]]
        cells = [row["label"], f"{secs(up)} ({secs(lo)} – {secs(hi)})",
                 signed_ms((up - ideal) * 1000),
                 f"{statistics.median(r['first_start_s'] for r in runs) * 1000:.0f} ms",
                 f"{signed_ms(statistics.median(gate))} ({signed_ms(max(gate))})",
                 f"{statistics.median(viol):g} (max {max(viol)}) of {w['dependents']}"]
        missed = []
        if up > ideal + budget:
            missed.append("bring-up")
        if max(viol):
            missed.append("violations")
        if with_memory:
            rss = statistics.median(r["rss_kib"] for r in runs)
            pss = [r["pss_kib"] for r in runs if r["pss_kib"] is not None]
            cells.append(f"{mib(rss)} / {mib(statistics.median(pss)) if pss else '—'}")
            if max(r["rss_kib"] for r in runs) > 12 * 1024:
                missed.append("RSS")
        rows.append(cells + [verdict(missed) if row["key"] == "titan" else ""])
    return rows


def w1_section(w):
    header = ["supervisor — start ordering", "bring-up median (min – max)", "over ideal",
              "first service start", "dependency ready → start, median (max)",
              "ordering violations per run", "titan target"]
    lines = [f"### W1 — 16 services, 6 tiers, ready 200 ms after start (ideal {secs(w['ideal_s'])})",
             "", f"{plural(w['reps'], 'run')} per row. Titan target: {TARGETS['W1']}.", ""]
    return lines + table(header, bringup_rows(w, w["ideal_s"], 0.050, False))


def w4_section(w):
    header = ["supervisor — start ordering", "bring-up median (min – max)", "over ideal",
              "first service start", "dependency ready → start, median (max)", "ordering violations per run",
              "daemon VmRSS / PSS after bring-up", "titan target"]
    lines = [f"### W4 — 200 services, 10 tiers of 20, 3 explicit dependencies each, ready 200 ms "
             f"after start (ideal {secs(w['ideal_s'])})",
             "", f"{plural(w['reps'], 'run')} per row. Titan target: {TARGETS['W4']}.", ""]
    return lines + table(header, bringup_rows(w, w["ideal_s"], 0.100, True))


def w2_section(w):
    header = ["supervisor", "kill → listening p50", "p95", "max", "kill → new process start p50",
              "p95", "titan target"]
    rows = []
    for row in w["rows"]:
        if not row["runs"]:
            rows.append(unmeasured(row, len(header)))
            continue
        r = row["runs"][0]
        lst, spn = r["listen_ms"], r["spawn_ms"]
        target = ""
        if row["key"] == "titan":
            target = verdict([k for k, ok in (("p50", pct(lst, 50) <= 3),
                                              ("p95", pct(lst, 95) <= 5)) if not ok])
        rows.append([row["label"], ms(pct(lst, 50)), ms(pct(lst, 95)), ms(max(lst)),
                     ms(pct(spn, 50)) if spn else "—", ms(pct(spn, 95)) if spn else "—", target])
    lines = [f"### W2 — restart after `kill -9`, 16 services up ({w['kills']} kills)", "",
             f"Titan target: {TARGETS['W2']}. Percentiles are nearest-rank over the kills.", ""]
    return lines + table(header, rows)


def w3_section(w):
    header = ["supervisor", "process measured", "VmRSS end (peak)", "of which file-backed",
              "PSS", "CPU-s per 30 s", "health checks", "titan target"]
    rows = []
    for row in w["rows"]:
        if not row["runs"]:
            rows.append(unmeasured(row, len(header)))
            continue
        r = row["runs"][0]
        target = ""
        if row["key"] == "titan":
            target = verdict([k for k, ok in (("RSS", r["peak_rss_kib"] <= 6 * 1024),
                                              ("CPU", r["cpu_s_per_30s"] <= 0.1)) if not ok])
        rows.append([row["label"], row["process"],
                     f"{mib(r['rss_kib'])} ({mib(r['peak_rss_kib'])})",
                     mib(r["rss_file_kib"]), mib(r["pss_kib"]),
                     f"{r['cpu_s_per_30s']:.3f}", row["health"], target])
    lines = [f"### W3 — idle for {w['seconds']:g} s with 16 services up", "",
             f"Titan target: {TARGETS['W3']}.", ""]
    return lines + table(header, rows)


READING = [
    "*Ideal* is one readiness delay per tier: what a supervisor with zero overhead that starts "
    "each service the instant its dependencies are ready would achieve.",
    "PM2 and supervisord do not wait for readiness: their *native* rows start every tier at once, "
    "so their bring-up can beat the ideal while (nearly) every dependent service starts before "
    "its dependencies are ready. Their *scripted gate* rows are correct but pay for a CLI "
    "invocation and port polling per tier.",
    "*First service start* is t0 → the first `start` line: the supervisor's own start-up cost "
    "(for PM2, the CLI plus spawning the God daemon).",
    "*Dependency ready → start* is, per dependent service, its `start` minus the last `ready` of "
    "its dependencies, over all runs: the latency of the gate (probe interval, spawn), or how "
    "early it started when negative.",
    "W2's kill → listening includes the kernel tearing the killed process down; kill → new "
    "process start is taken from the new process's own start-log line.",
    "W3: PM2's figure is its God daemon alone; its 16 service processes (the same Rust test "
    "service for every supervisor) are not counted for anyone. Only titan-supervisor runs health "
    "checks (16 HTTP probes per second).",
    "W3's *file-backed* part of VmRSS (RssFile) is mostly the executable and its libraries.",
]
SHARED_BINARY = (
    "Here the test services run titan-supervisor's own binary, so titan-supervisor's PSS divides "
    "its executable's pages among them; in production the services are other programs, so "
    "VmRSS is the figure to hold to the target.")

SECTIONS = {"W1": w1_section, "W2": w2_section, "W3": w3_section, "W4": w4_section}


def section(results, meta):
    m = meta["machine"]
    lines = [
        BEGIN,
        "## Engine: bring-up, restart, idle cost (titan-supervisor vs PM2 vs supervisord)",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} at commit `{meta['commit']}`"
        f"{' (quick run: fewer repetitions)' if meta['quick'] else ''}.",
        f"Machine: {m['nproc']} CPUs ({m['model']}), {m['memory']} memory, "
        f"{m['os']}, kernel {m['kernel']}. Load average (1/5/15 min) at the start "
        f"{meta['load_start']}, at the end {meta['load_end']}: other work on the machine shows "
        "up in these figures, compare rows of one run rather than runs.",
        "Versions: " + "; ".join(meta["versions"]) + ".",
        f"Every supervisor runs the same release-built test service (`{meta['service']}`); figures "
        "come from the services' own start-log timestamps, connects to their ports and /proc "
        "(see `bench/README.md`).",
        "",
    ]
    for name in ("W1", "W2", "W3", "W4"):
        if name in results:
            lines += SECTIONS[name](results[name]) + [""]
            notes = [f"{row['label']}: {n}" for row in results[name]["rows"]
                     for n in row["notes"]]
            if notes:
                lines += [f"- {n}" for n in notes] + [""]
    reading = READING + ([SHARED_BINARY] if meta["service"].startswith("titan-supervisor") else [])
    lines += ["Reading the tables:", ""] + [f"- {r}" for r in reading] + [""]
    lines.append(END)
    return "\n".join(lines)


def _header(title, meta):
    m = meta["machine"]
    return [
        title, "",
        f"Produced by `{meta['command']}` on {meta['date']} at commit `{meta['commit']}`"
        f"{' (quick run: fewer repetitions)' if meta['quick'] else ''}.",
        f"Machine: {m['nproc']} CPUs ({m['model']}), {m['memory']} memory, "
        f"{m['os']}, kernel {m['kernel']}. Load average (1/5/15 min) at the start "
        f"{meta['load_start']}, at the end {meta['load_end']}: other work on the machine shows "
        "up in these figures, compare rows of one run rather than runs.",
        "Versions: " + "; ".join(meta["versions"]) + ".",
    ]


# --- W5 ----------------------------------------------------------------------------------------

def per_run(runs, key):
    return " / ".join(f"{r[key]:,}" for r in runs)


def w5_rows(w, sv_capture):
    flood, rows = w["flood"], []
    for row in w["rows"]:
        runs = row["runs"]
        if not runs:
            rows.append(unmeasured(row, 10))
            continue
        cap = [r["capture_s"] for r in runs]
        capture = f"{secs(statistics.median(cap))} ({secs(min(cap))} – {secs(max(cap))})"
        if not all(r["complete"] for r in runs):
            capture += " (last lines lost)"
        if row["key"] == "supervisord":
            compressed = "n/a (no compression)"
        elif not any(r["gz"] for r in runs):
            compressed = "never: nothing compressed"
        else:
            compressed = secs(statistics.median(r["settled_s"] for r in runs))
        largest = max(runs, key=lambda r: r["largest"])
        over = "" if largest["largest"] <= flood.max_size else \
            f" (+{largest['largest'] - flood.max_size:,})"
        cpu_parts = {}
        for r in runs:
            for k, v in r["cpu"].items():
                cpu_parts.setdefault(k, []).append(v)
        total = statistics.median(r["cpu_s"] for r in runs)
        med = {k: statistics.median(v) for k, v in cpu_parts.items()}
        summed = [f"{k} {v:.2f}" for k, v in med.items() if not k.startswith("of which ")]
        within = [f"{k[len('of which '):]} {v:.2f}" for k, v in med.items()
                  if k.startswith("of which ")]
        cpu = f"{total:.2f}"
        if len(summed) > 1:
            cpu += f" ({' + '.join(summed)})"
        if within:
            cpu += f" (of which {', '.join(within)})"
        target = ""
        if row["key"] == "titan":
            missed = []
            if any(r["lost"] for r in runs):
                missed.append("lost lines")
            if any(r["duplicated"] for r in runs):
                missed.append("duplicated lines")
            if largest["largest"] > flood.max_size:
                missed.append("file over max_size")
            if sv_capture is None:
                missed.append("capture ratio not measured (no supervisord row)")
            elif statistics.median(cap) > W5_CAPTURE_RATIO * sv_capture:
                missed.append("capture")
            target = verdict(missed)
        rows.append([row["label"], capture, compressed, per_run(runs, "lost"),
                     per_run(runs, "duplicated"), per_run(runs, "split"),
                     f"{largest['largest']:,}{over}", per_run(runs, "files"), cpu, target])
    return rows


def _median_capture(w, key):
    for row in w["rows"]:
        if row["key"] == key and row["runs"]:
            return statistics.median(r["capture_s"] for r in row["runs"])
    return None


def _w5_details(w):
    """What went wrong, precisely: every run for titan-supervisor (a bug report), the first run
    with a problem for the others (an illustration)."""
    out = []
    for row in w["rows"]:
        for i, r in enumerate(row["runs"]):
            lines = []
            for d in r["_detail"]:
                for kind in ("lost", "duplicated"):
                    if d[kind]:
                        lines.append(f"{d['service']} {kind}: " + "; ".join(d[kind][:3])
                                     + ("; …" if len(d[kind]) > 3 else ""))
                if d["broken"]:
                    lines.append(f"{d['service']}: {d['broken']} broken line(s)")
            lines += [f"{name}: {size:,} bytes, over max_size" for name, size in r["over_limit"]
                      if row["key"] == "titan"]
            lines += [f"{name}: truncated or damaged gzip" for name in r["damaged_gz"]]
            if lines:
                shown = lines if row["key"] == "titan" else lines[:4]
                out.append(f"{row['label']}, run {i + 1}: " + " — ".join(shown)
                           + (" — …" if len(shown) < len(lines) else ""))
                if row["key"] != "titan":
                    break
    return out


W5_READING = [
    "*Capture* runs from the first service's own start (its start-log line, so no supervisor's "
    "boot is counted) to the first poll (every 10 ms) that finds the last numbered line of "
    "every service in a plain log file. Each supervisor writes a service's lines in order, so "
    "by then every earlier line has been written or lost; the counts after it say which.",
    "*All rotated files compressed* runs from the same start to the beginning of the first "
    "stretch of 0.2 s, at or after the capture, with no rotation or compression left to do "
    "(same polls): titan-supervisor has no rotated `.log` and no `.gz.tmp` left; PM2 has no log "
    "at or over `max_size` and pm2-logrotate holds none of the services' files open (it "
    "truncates a log only once its compressed copy is written). For PM2 as released it is when "
    "its (uncompressed) copies are done, hence *never* in that column.",
    "*Lost*, *duplicated*: per run (` / ` between runs), over the 4 × 262,144 numbered lines, read "
    "from every file of every service, plain and gzipped, current and rotated, oldest first as "
    "one stream. A line is lost when no file holds it whole. *Lines cut by a rotation*: files "
    "that end in the middle of a line continued by the next file (joined, not counted as lost).",
    "*Largest file*: the largest uncompressed content of any log file (a compressed one is "
    "counted at its uncompressed size, the size it reached on disk before compression), or the "
    "largest a plain file was seen during the polls, whichever is larger; in brackets how far "
    "over the limit.",
    "*Files*: every log file of the 4 services at the end, per run (PM2 keeps an empty "
    "`-err.log` per app).",
    "*CPU-s*: utime + stime from /proc at the end of the run, since each process started (the "
    "services' own CPU is not counted). titan-supervisor captures, rotates and compresses in "
    "one process: its figure includes its `titan-logs` (capture, rotation) and `titan-gzip` "
    "(compression) threads, shown apart. PM2's is its God daemon (capture) plus the "
    "pm2-logrotate module, a node process of its own (rotation, compression).",
    "pm2-logrotate rotates by copy and truncate: every `workerInterval` (1 s, its minimum) it "
    "stats each log, and copies one that has reached `max_size` to a new file (gzipping on the "
    "way when compressing), then truncates the original; lines that PM2 appends between the end "
    "of the copy and the truncation are lost, and a file grows past `max_size` for up to a "
    "second's worth of output before it is copied. With `compress true` set the way its README "
    "says (`pm2 set pm2-logrotate:compress true`), 3.0.0 does not compress: pmx casts the "
    "setting to a boolean and pm2-logrotate's parseBool only accepts the string "
    "(keymetrics/pm2-logrotate#201). The `compress` fix row applies the one-line fix "
    "proposed in keymetrics/pm2-logrotate#202 to the session's copy of the module.",
    "supervisord rotates by rename, after the write that reaches `stdout_logfile_maxbytes`: no "
    "line is lost, but a file ends up to one read (128 KiB) over the limit, and rotations cut "
    "lines in two (the half lines are in consecutive files). It has no compression.",
]


def logs_section(results, meta):
    w, flood = results["W5"], results["W5"]["flood"]
    sv, ti = _median_capture(w, "supervisord"), _median_capture(w, "titan")
    pm = [(_median_capture(w, "pm2"), "PM2")]
    lines = [LOGS_BEGIN] + _header(
        "## Logs: capture, rotation, compression (titan-supervisor vs PM2 vs supervisord)", meta)
    lines += [
        f"Every supervisor runs the same release-built test service (`{meta['service']}`); "
        "figures come from the log files themselves, the services' start log and /proc "
        "(see `bench/README.md`).",
        "",
        f"### W5 — {len(flood.services)} services × {flood.lines:,} lines of "
        f"{flood.line_bytes} bytes ({flood.total_bytes / 2**20:.0f} MiB), as fast as they can, "
        f"rotation at {flood.max_size:,} bytes (10 MiB), {flood.backups} rotated files kept",
        "",
        f"{plural(w['reps'], 'run')} per row, medians. Titan target: {TARGETS['W5']}.",
        "",
    ]
    header = ["supervisor — rotation", "capture: first start → last line on disk, median "
              "(min – max)", "all rotated files compressed", "lost lines", "duplicated lines",
              "lines cut by a rotation", f"largest file, bytes (limit {flood.max_size:,})",
              "files", "CPU-s", "titan target"]
    lines += table(header, w5_rows(w, sv)) + [""]
    if ti is not None and sv is not None:
        ratio = ti / sv
        lines.append(f"Capture time, titan-supervisor / supervisord: **{ratio:.2f}** (target ≤ "
                     f"{W5_CAPTURE_RATIO}: {'met' if ratio <= W5_CAPTURE_RATIO else 'missed'})"
                     + "".join(f"; titan-supervisor / {name}: {ti / v:.2f}" for v, name in pm
                               if v) + ".")
        lines.append("")
    notes = [f"{row['label']}: {n}" for row in w["rows"] for n in row["notes"]]
    details = _w5_details(w)
    if notes or details:
        lines += [f"- {n}" for n in notes + details] + [""]
    lines += ["Reading the table:", ""] + [f"- {r}" for r in W5_READING] + ["", LOGS_END]
    return "\n".join(lines)


def write(path, text, begin=BEGIN, end=END):
    """Replaces the section of path between begin and end (creating the file or appending the
    section)."""
    path = Path(path)
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


# --- C1, C2: containers ------------------------------------------------------------------------

CONTAINERS_BEGIN, CONTAINERS_END = "<!-- bench:containers -->", "<!-- /bench:containers -->"
C1_TARGET_S = 5.0
C2_TARGET_MS = 400.0
CONTAINER_TARGETS = {
    "C1": f"≤ {C1_TARGET_S:g} s from launch to every service healthy, cold and warm",
    "C2": f"kill → healthy p50 ≤ {C2_TARGET_MS / 1000:g} s",
}


def _median_range(values, fmt=secs):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))} – {fmt(max(values))})"


def c1_rows(w):
    rows, tiers = [], []
    for row in w["rows"]:
        label = f"{row['label']} — {row['start']}"
        runs = row["runs"]
        if not runs:
            rows.append([label, f"failed: {row['error']}"] + [""] * 6)
            continue
        healthy = [r["healthy_s"] for r in runs]
        gate = [g for r in runs for g in r["gate_ms"]]
        viol = [r["violations"] for r in runs]
        status = [r["status_s"] for r in runs if r.get("status_s") is not None]
        if row["key"] == "titan":
            view = _median_range(status) if status else "—"
        else:
            view = "`up -d` returned " + _median_range([r["up_returned_s"] for r in runs])
        target = ""
        if row["key"] == "titan":
            missed = []
            if statistics.median(healthy) > C1_TARGET_S:
                missed.append(f"median over {C1_TARGET_S:g} s")
            elif max(healthy) > C1_TARGET_S:
                missed.append(f"{sum(h > C1_TARGET_S for h in healthy)} of {len(healthy)} runs "
                              f"over {C1_TARGET_S:g} s")
            if max(viol):
                missed.append("violations")
            if row["error"]:
                missed.append("a run failed")
            target = verdict(missed)
        rows.append([label, _median_range(healthy),
                     secs(statistics.median(r["ready_s"] for r in runs)),
                     f"{statistics.median(r['first_start_s'] for r in runs) * 1000:.0f} ms",
                     f"{signed_ms(statistics.median(gate))} ({signed_ms(max(gate))})",
                     f"{statistics.median(viol):g} (max {max(viol)}) of {w['dependents']}",
                     view, target])
        per_tier = [statistics.median(r["tier_s"][i] for r in runs)
                    for i in range(len(runs[0]["tier_s"]))]
        steps = [per_tier[0]] + [b - a for a, b in zip(per_tier, per_tier[1:])]
        tiers.append([label] + [f"{t:.2f} s (+{d * 1000:.0f} ms)" for t, d in zip(per_tier, steps)])
    return rows, tiers


def c2_rows(w):
    rows = []
    for row in w["rows"]:
        k = row["kills"]
        if not k:
            rows.append([row["label"], f"failed: {row['error']}"] + [""] * 6)
            continue
        healthy = [r["healthy_ms"] for r in k]
        started = [r["started_ms"] for r in k if r["started_ms"] is not None]
        ready = [r["ready_ms"] for r in k if r["ready_ms"] is not None]
        target = ""
        if row["key"] == "titan":
            missed = [] if pct(healthy, 50) <= C2_TARGET_MS else ["p50"]
            if row["error"]:
                missed.append("a kill failed")
            target = verdict(missed)
        rows.append([row["label"] + (f" ({len(k)} of {w['kills']} kills)" if len(k) < w["kills"]
                                     else ""),
                     ms(pct(healthy, 50)), ms(pct(healthy, 95)), ms(max(healthy)),
                     ms(pct(started, 50)) if started else "—",
                     ms(pct(ready, 50)) if ready else "—",
                     f"{min(r['age_s'] for r in k):.1f} s", target])
    return rows


def _over_floor_c1(w):
    """titan-supervisor's medians against the floor of the same run, cold and warm."""
    over = []
    for row in w["rows"]:
        if row["key"] == "titan" and row["runs"]:
            median = statistics.median(r["healthy_s"] for r in row["runs"])
            over.append(f"{row['start']} {(median - w['floor_s']) * 1000:+.0f} ms")
    return f" titan-supervisor's median against it: {', '.join(over)}." if over else ""


def _over_floor_c2(w):
    """titan-supervisor's p50 against the Engine-API restart floor of the same run."""
    p50 = {row["key"]: pct([r["healthy_ms"] for r in row["kills"]], 50)
           for row in w["rows"] if row["kills"]}
    if "titan" not in p50 or "api" not in p50:
        return []
    return ["", f"titan-supervisor against the restart floor (the Engine-API row) at p50: "
            f"{p50['titan'] - p50['api']:+.0f} ms."]


def adoption_lines(w):
    a, m = w["adoption"], w["rss"]
    lines = []
    if a["runs"]:
        took = [r["adopt_s"] for r in a["runs"]]
        restarted = sum(len(r["restarted"]) for r in a["runs"])
        restarts = sum(r["restarts"] for r in a["runs"])
        lines.append(
            f"- **Adoption** ({plural(len(took), 'run')}): `kill -9` of `titan-supervisor run` "
            f"with the 16 containers up, then `run` again: its status shows all 16 healthy after "
            f"**{_median_range(took, lambda v: f'{v * 1000:.0f} ms')}** (median, min – max); "
            f"containers restarted meanwhile (`.Id`, `.State.StartedAt` compared): "
            f"**{restarted}**; restarts in its status: {restarts}."
            + (f" Failed: {a['error']}" if a["error"] else "") + " No target set.")
    elif a["error"]:
        lines.append(f"- **Adoption**: failed: {a['error']}")
    if m.get("settled"):
        parts = [f"{mib(m['settled']['rss_kib'])} settled 2 s after bring-up"]
        if m.get("after_kills"):
            parts.append(f"{mib(m['after_kills']['rss_kib'])} after the {w['kills']} kills")
        if m.get("after_adoption"):
            parts.append(f"{mib(m['after_adoption'][-1]['rss_kib'])} in the process that adopted "
                         "them")
        pss = m["settled"]["pss_kib"]
        lines.append(f"- **titan-supervisor's memory** with 16 containers (VmRSS of `run`): "
                     + "; ".join(parts) + f" (PSS {mib(pss)} settled). No target set for "
                     "containers (W3's for native services is ≤ 6 MiB).")
    elif m.get("error"):
        lines.append(f"- **titan-supervisor's memory**: not measured: {m['error']}")
    if w.get("status_check"):
        lines.append(f"- `titan-supervisor status --json` at the end: {w['status_check']}.")
    return lines


CONTAINERS_READING = [
    "Every stack runs the same FROM-scratch image of the test service (`titan-testsvc`, "
    "statically linked, built with `--profile static` as `scripts/test.sh` does), pushed to a "
    "private registry and pinned by digest, on a private dockerd (`scripts/docker-env.sh`: "
    "overlay2, `--iptables=false --bridge=none`, user-defined bridge networks, published ports "
    "through docker-proxy on 127.0.0.1). Each container listens on 8080, published on "
    "127.0.0.1:250NN.",
    "*All healthy (outside)*: from t0 (right before `titan-supervisor run` or `docker-compose "
    "up -d` is launched) to the first `GET /health` answered 200 on the last service's published "
    "port. A port is polled every 10 ms (C2: every 2 ms) once its service's process has logged "
    "its start (it cannot answer earlier; polling all 16 ports from t0 loads docker-proxy "
    "during the bring-up being measured), with a fresh connection each time while earlier ones "
    "may still hang: right after a container starts or dies, docker-proxy accepts and forwards "
    "into a network that is not (or no longer) there, and such a connection hangs for a TCP "
    "retransmit (about 1 s).",
    "*Last ready*, *first container start*, *dependency ready → start*, *ordering violations*: "
    "from the start log every container appends to (`--start-log` on a bind-mounted host "
    "directory; same clock), as in W1. *Dependency ready → start* is the gate's latency plus "
    "the time dockerd takes to start a container.",
    "*Cold*: no container exists (the image is present locally), nor the project's network. "
    "*Warm*: the containers exist, stopped by the previous run (`SIGTERM` to titan-supervisor; "
    "`docker-compose stop`). Each round runs cold then warm; 2 s pause before every launch.",
    "titan-supervisor: `health = { http = \"http://127.0.0.1:PORT/health\", start_interval = "
    "\"5ms\" }` (it probes the container's own address), implicit previous-group dependencies, "
    "`restart = \"always\"`, `min_uptime = \"1s\"`, `backoff.initial = \"0ms\"`. *Own view*: "
    "the first `/v1/status` answer (the control socket, polled every 20 ms) with all 16 healthy.",
    "docker-compose: compose file format 2.4, `depends_on: {DEP: {condition: service_healthy}}`, "
    "`healthcheck: [\"CMD\", \"/titan-testsvc\", \"--check-http\", "
    "\"http://127.0.0.1:8080/health\"]` (the image has no shell or curl), `timeout: 2s`, "
    "`retries: 3`. 1 ms is the tightest interval dockerd accepts; each check is an exec in the "
    "container (about 80 ms here), so at 1 ms every running container is exec'd back to back. "
    "The 100 ms rows show the same with less exec load.",
    "C2: the C1 graph with services ready at once, every container up; `kill -9` of the "
    "container's main process (`.State.Pid`) from the host, rotating over the 16 services. "
    "*Kill → container started* is the new `.State.StartedAt`; *kill → process ready* the "
    "new process's `ready` line. A kill waits until the target has run over 1 s under "
    "titan-supervisor (its `min_uptime`: no backoff) and over 10 s under dockerd's policy (it "
    "doubles its 100 ms restart delay unless the container ran 10 s): each at its shortest "
    "restart delay.",
    "C2's *dockerd alone, restarted through the Engine API* row is the floor for any supervisor "
    "that, like titan-supervisor, leaves restarts to itself rather than to dockerd: the "
    "containers have no restart policy, and one client thread reads dockerd's events stream "
    "and sends `POST /containers/ID/start` the moment a `die` arrives (a start cannot succeed "
    "earlier: dockerd holds the container until it has released the dead one's resources). "
    "The gap between it and titan-supervisor's row is everything titan-supervisor adds.",
    "Adoption and memory are measured in C2's titan-supervisor session, after the kills.",
]


def containers_section(results, meta):
    lines = [CONTAINERS_BEGIN] + _header(
        "## Containers: bring-up, crash recovery, adoption (titan-supervisor vs docker-compose "
        "vs dockerd's restart policy)", meta)
    lines += [f"Image: `{meta['image']}` (FROM scratch, the test service alone).", ""]
    if "C1" in results:
        w = results["C1"]
        rows, tiers = c1_rows(w)
        lines += [f"### C1 — 16 containers, 6 tiers, ready 200 ms after start, health-gated "
                  f"(ideal {secs(w['ideal_s'])})", "",
                  f"{plural(w['reps'], 'run')} per row. Titan target: {CONTAINER_TARGETS['C1']}.",
                  ""]
        floor = w.get("start_floor")
        if floor:
            sizes = sorted(floor)
            lines += [
                "dockerd's own floor: `POST /containers/NAME/start` (the Engine API) for "
                + " / ".join(map(str, sizes)) + " created containers at once, until the last "
                "one's process logs its start: "
                + " / ".join(f"{statistics.median(floor[n]) * 1000:.0f} ms" for n in sizes)
                + f" (median of {len(floor[sizes[0]])}; min – max "
                + ", ".join(f"{min(floor[n]) * 1000:.0f} – {max(floor[n]) * 1000:.0f} ms"
                            for n in sizes)
                + "). Every tier takes at least the start of its containers plus its 200 ms "
                f"readiness: **{secs(w['floor_s'])}** for this graph, the floor for anything "
                "that starts a container once its dependencies are healthy (the ideal counts "
                "no start cost)." + _over_floor_c1(w), ""]
        lines += table(["stack — start", "all healthy (outside), median (min – max)",
                        "last ready (start log)", "first container start",
                        "dependency ready → start, median (max)", "ordering violations per run",
                        "supervisor's own view: all healthy", "titan target"], rows)
        lines += ["", "When each tier was all healthy (outside; median over the runs), and the "
                  "step from the previous tier:", ""]
        lines += table(["stack — start"] + [f"tier {i + 1}" for i in range(len(tiers[0]) - 1)]
                       if tiers else ["stack"], tiers)
        notes = [f"{row['label']}: {n}" for row in w["rows"] for n in row["notes"]]
        lines += [""] + ([f"- {n}" for n in notes] + [""] if notes else [])
    if "C2" in results:
        w = results["C2"]
        lines += [f"### C2 — container crash → healthy again ({w['kills']} kills, `kill -9` of "
                  "the container's main process from the host)", "",
                  f"Titan target: {CONTAINER_TARGETS['C2']}. Percentiles are nearest-rank over "
                  "the kills.", ""]
        lines += table(["supervisor", "kill → /health 200 (outside) p50", "p95", "max",
                        "kill → container started p50", "kill → process ready p50",
                        "shortest uptime at a kill", "titan target"], c2_rows(w))
        lines += _over_floor_c2(w)
        floor = results.get("C1", {}).get("start_floor") or {}
        if floor.get(1):
            lines += ["", f"For scale: dockerd starts one created container in "
                      f"{statistics.median(floor[1]) * 1000:.0f} ms here (C1's floor); a restart "
                      "also waits for dockerd's `die` event, which it sends once it has released "
                      "the dead container's resources."]
        lines += [""] + adoption_lines(w)
        notes = [f"{row['label']}: {n}" for row in w["rows"] for n in row["notes"]]
        lines += [f"- {n}" for n in notes] + [""]
    lines += ["Reading the tables:", ""] + [f"- {r}" for r in CONTAINERS_READING]
    lines += ["", CONTAINERS_END]
    return "\n".join(lines)


# --- N-switch, C2-switch, C3-rollback: deploys -------------------------------------------------

DEPLOYS_BEGIN, DEPLOYS_END = "<!-- bench:deploys -->", "<!-- /bench:deploys -->"


def _ms_stats(values):
    """median, p90 (nearest rank), min – max, in ms."""
    return (ms(statistics.median(values)), ms(pct(values, 90)),
            f"{ms(min(values))} – {ms(max(values))}")


def _target_ms(values, limit):
    """The verdict of a wall-time target held at the median and at p90; by how much."""
    med, p90 = statistics.median(values), pct(values, 90)
    missed = []
    if med > limit:
        missed.append(f"median +{med - limit:.0f} ms over")
    elif p90 > limit:
        missed.append(f"p90 +{p90 - limit:.0f} ms over ({sum(v > limit for v in values)} of "
                      f"{len(values)} over)")
    return missed


def _steps_table(runs, names=()):
    """Median (max) of each pipeline step's `ms` (every step the progress lines named, in
    their order), and of the wall time outside the steps."""
    header, cells = [], []
    names = list(names)
    for r in runs:
        names += [k for k in r["steps"] if k not in names]
    for name in names:
        got = [r["steps"].get(name) for r in runs if name in r["steps"]]
        if got:
            header.append(f"`{name}`")
            cells.append(f"{statistics.median(got):.0f} ({max(got)})")
    outside = [r["wall_ms"] - sum(r["steps"].values()) for r in runs]
    header.append("wall − Σ steps")
    cells.append(f"{statistics.median(outside):.0f} ({max(outside):.0f})")
    for key, title in GAPS:
        got = [r["gaps"][key] for r in runs if r.get("gaps")]
        if got:
            header.append(title)
            cells.append(f"{statistics.median(got):.0f} ({max(got):.0f})")
    return table(header, [cells])


def _over_target_lines(runs, limit, value=lambda r: r["wall_ms"], what="switches",
                       only=None):
    """Each run over the target, with what grew in it: every step of 10 ms or more, every
    stretch outside the steps of 10 ms or more, and from the start log when the last changed
    service was ready."""
    over = [r for r in runs if value(r) > limit]
    if not over:
        return []
    parts = []
    for r in over:
        grew = [f"`{k}` {v}" for k, v in r["steps"].items()
                if v >= 10 and (only is None or k in only)]
        grew += [f"{dict(GAPS)[k].removeprefix('of which: ')} {v:.0f}"
                 for k, v in r.get("gaps", {}).items() if v >= 10]
        if r.get("ready_ms") is not None:
            grew.append(f"last changed service ready at {r['ready_ms']:.0f}")
        parts.append(f"{value(r):.0f} ms, +{value(r) - limit:.0f} ({', '.join(grew)})")
    return [f"{len(over)} of {len(runs)} {what} over {limit:.0f} ms, by how much and where "
            f"(ms): " + "; ".join(parts) + ". `lock` writes and fsyncs the holder file, the "
            "time *between steps* holds the switch journal's and the BAD mark's fsyncs: under "
            "another process's disk or CPU load these are what grows; `verify` is the "
            "changed services coming up (3 × 200 ms of it is their readiness)."]


GAPS = (("head", "of which: launch → first step"), ("between", "between steps"),
        ("tail", "last step → outcome line"), ("exit", "outcome line → CLI exit"))


def _start_log_lines(runs, what):
    """Where a switch's time goes, from the start log (median over the runs, max in brackets)."""
    first = [r["first_start_ms"] for r in runs if r.get("first_start_ms") is not None]
    gates = [g for r in runs for g in r.get("gate_ms", [])]
    up = [u for r in runs for u in r.get("start_ready_ms", [])]
    ready = [r["ready_ms"] for r in runs if r.get("ready_ms") is not None]
    tail = [r["wall_ms"] - r["ready_ms"] for r in runs if r.get("ready_ms") is not None]
    fmt = lambda v: f"{statistics.median(v):.0f} ms (max {max(v):.0f})" if v else "—"
    return [f"Where {what}'s time goes (start log, median over the runs, max in brackets): "
            f"t0 → the first changed service's new process {fmt(first)}; a changed service's "
            f"new process → ready {fmt(up)}; a changed dependency ready → its changed "
            f"dependent's new process {fmt(gates)}; t0 → the last changed service ready "
            f"{fmt(ready)}; that → the end {fmt(tail)}."]


def _unchanged(runs):
    restarts = [r["restarts_unchanged"] for r in runs if r.get("restarts_unchanged") is not None]
    pids = sum(len(r.get("pids_unchanged", [])) for r in runs)
    text = f"{sum(restarts)} / {pids}" if restarts else f"— / {pids}"
    return text, (sum(restarts) if restarts else 0) + pids


def nswitch_rows(w):
    rows, n = [], len(w["changed"])
    target = w["ready_ms"] * 3 + 100
    for row in w["rows"]:
        runs = row["runs"]
        if not runs:
            why = row.get("skipped")
            rows.append([row["label"], f"not measured ({why})" if why else
                         f"failed: {row['error']}"] + [""] * 6)
            continue
        wall = [r["wall_ms"] for r in runs]
        ready = [r["ready_ms"] for r in runs if r.get("ready_ms") is not None]
        unchanged, bad = _unchanged(runs)
        viol = [r["violations"] for r in runs]
        new = min(r["new_definition"] for r in runs)
        recreated = min(len(r["recreated"]) for r in runs)
        verdict_cell = ""
        if row["key"] == "titan":
            missed = _target_ms(wall, target)
            if bad:
                missed.append("unchanged services restarted")
            if row["error"]:
                missed.append("a switch failed")
            verdict_cell = verdict(missed)
        rows.append([row["label"] + (f" ({len(runs)} runs)" if len(runs) < w["reps"] else ""),
                     *_ms_stats(wall), ms(statistics.median(ready)) if ready else "—",
                     unchanged, f"{recreated} / {new} of {n}",
                     f"{statistics.median(viol):g} (max {max(viol)}) of "
                     f"{runs[0]['dependent_pairs']}", verdict_cell])
    return rows


def cswitch_rows(w):
    rows, n = [], len(w["changed"])
    for row in w["rows"]:
        runs = row["runs"]
        if not runs:
            rows.append([row["label"], f"failed: {row['error']}"] + [""] * 7)
            continue
        wall = [r["wall_ms"] for r in runs]
        ready = [r["ready_ms"] for r in runs if r.get("ready_ms") is not None]
        moved = sum(len(r["containers_changed_unchanged"]) for r in runs)
        restarts = [r["restarts_unchanged"] for r in runs if r.get("restarts_unchanged") is not None]
        recreated = min(r["containers_recreated"] for r in runs)
        new = min(r["new_definition"] for r in runs)
        viol = [r["violations"] for r in runs]
        ups = [r["up_returned_ms"] for r in runs if r.get("up_returned_ms") is not None]
        verdict_cell = ""
        if row["key"] == "titan":
            missed = _target_ms(wall, CSWITCH_TARGET_MS)
            if moved or sum(restarts):
                missed.append("unchanged containers touched")
            if row["error"]:
                missed.append("a switch failed")
            verdict_cell = verdict(missed)
        rows.append([row["label"] + (f" ({len(runs)} runs)" if len(runs) < w["reps"] else ""),
                     *_ms_stats(wall), ms(statistics.median(ready)) if ready else "—",
                     f"`up -d` returned {ms(statistics.median(ups))}" if ups else "—",
                     f"{moved} / {sum(restarts) if restarts else '—'}",
                     f"{recreated} / {new} of {n}",
                     f"{statistics.median(viol):g} (max {max(viol)}) of "
                     f"{runs[0]['dependent_pairs']}", verdict_cell])
    return rows


CSWITCH_TARGET_MS = 3000.0
ROLLBACK_SLACK_MS = 2000.0

DEPLOYS_READING = [
    "Every host is laid out as tests/deploy.rs lays one out: `releases/<id>/` with "
    "`services.toml`, `digests.json` (`{}` for native services, every container's pinned "
    "image for containers) and `release.json`; `current` a symlink to the release; the daemon "
    "started as `titan-supervisor run --config <dir>/services.toml`, itself a symlink to "
    "`current/services.toml`. `[deploy] verify_timeout = \"30s\"`, `probation = \"1s\"`; each "
    "repetition starts once the last release has passed its probation (it is the last known "
    "good), then 0.5–1 s more.",
    "The graph is W1's: 16 services in 6 tiers (3, 3, 3, 3, 2, 2), each depending on every "
    "service of the previous tier (implicit previous-group dependencies), each ready 200 ms "
    "after its own start and gated by its `/health` (`start_interval = \"5ms\"`). Release B "
    "changes s04, s07 and s10, the first service of tiers 2, 3 and 4: each depends on the one "
    "before, so the three must come up one after another and no switch can take less than "
    "3 × 200 ms. A → B is one repetition, B → A the next.",
    "*Wall*: for titan-supervisor, the launch of `titan-supervisor switch --json RELEASE` → "
    "its exit (it exits when the outcome line arrives; `--json` passes the daemon's progress "
    "lines through as they come, the only difference from the plain output). For PM2, the "
    "launch of the first `pm2 reload` → the last changed service answering `GET /policy` with "
    "its new hash (polled every 10 ms). For docker-compose, the launch of `docker-compose up "
    "-d` → every one of the 16 services answering `GET /health` 200 on its published port, "
    "polled once `up -d` has returned (before, the old containers still answer).",
    "*Changed services ready again*: t0 → the last `ready` line of a changed service's new "
    "process in the start log every service appends to. *Unchanged: restarts / pids "
    "changed*: over all runs, the 13 unchanged services' `restarts` and `pid` in "
    "`titan-supervisor status --json` (PM2: `restart_time` and `pid` in `pm2 jlist`) before "
    "and after each switch. *Recreated / new definition*: the fewest changed services, over "
    "the runs, that got a new process (container), and that answered with the new definition "
    "afterwards (`GET /policy`; containers: `.Config.Image`). *Ordering violations*: a "
    "changed service whose new process started before its changed dependency's new process "
    "was ready (s07 on s04, s10 on s07).",
    "The step table: each step's `ms` from the progress lines (median, max in brackets); "
    "*wall − Σ steps* is what the CLI's wall time holds beyond the steps, split by when each "
    "line arrived: *launch → first step* (the CLI's start, its connect, the request), "
    "*between steps* (a step's line → the next step's start: the switch journal written "
    "before the swap, the BAD mark before a rollback; whole-millisecond `ms` add up to 1 ms "
    "of rounding per step), *last step → outcome line* (the evidence and the history line "
    "written), *outcome line → CLI exit*.",
    "PM2 has no dependency gate: its `--only s04,s07,s10` row reloads the three at once (so "
    "s07 and s10 start before what they depend on is ready again: the violations), its "
    "scripted-gate row reloads one tier's changed app at a time and polls it before the next, "
    "as the seeds' deploy scripts went tier by tier. Each `pm2` command is a node CLI start.",
    "C2-switch: the changed services' image is the test image plus `LABEL "
    "titan.variant=bench-switch`, built on the private dockerd and pushed to its registry "
    "(tests/common/docker.rs `variant_image`): another digest, the same program. *Unchanged "
    "containers changed*: `.Id` or `.State.StartedAt` of the 13 others differing before and "
    "after. docker-compose recreates the services whose image changed and, with `depends_on: "
    "{condition: service_healthy}`, waits for each one's healthcheck (an exec in the "
    "container) before starting the next.",
    "C3-rollback: release A carries a `[[verify.parity]]` of s01's and s10's `GET /policy` "
    "field `policy_hash` (equal); each repetition writes a new release B (the last one is "
    "marked BAD) whose s04, s07, s10 report `pb`: after they are healthy the parity differs, "
    "`verify` fails, and titan-supervisor swaps back to A, applies it (the three recreated "
    "again) and verifies it.",
]


def rollback_lines(w):
    runs, target = w["runs"], w["ready_ms"] * len(w["changed"]) + ROLLBACK_SLACK_MS
    lines = [f"### C3-rollback — a release whose `[[verify.parity]]` fails, rolled back by "
             f"itself ({plural(w['reps'], 'run')})", "",
             f"Titan target: the verify step's failure → the old release verified again ≤ the "
             f"changed services' readiness + 2 s = 3 × {w['ready_ms']} ms + 2 s = "
             f"**{target / 1000:g} s** (s04, s07, s10 come back one after another, as in "
             f"N-switch), held at the median and p90 of both measures.", ""]
    if not runs:
        return lines + [f"Not measured: {w['error']}", ""]
    sums = [r["steps_sum_ms"] for r in runs]
    back = [r["wall_back_ms"] for r in runs]
    to_exit = [r["wall_exit_ms"] for r in runs]
    whole = [r["wall_ms"] for r in runs]
    rows = [["`rollback swap` + `rollback apply` + `rollback verify` (their `ms`)", *_ms_stats(sums)],
            ["wall: the failed `verify` line arrives → the `rollback verify` line arrives",
             *_ms_stats(back)],
            ["wall: the failed `verify` line arrives → the CLI exits (`rolled_back`, exit 1)",
             *_ms_stats(to_exit)],
            ["the whole `switch` (wall), for scale", *_ms_stats(whole)]]
    lines += table(["measure", "median", "p90", "min – max"], rows)
    missed = _target_ms(sums, target) + [f"wall {m}" for m in _target_ms(back, target)]
    unchanged, bad = _unchanged(runs)
    if bad:
        missed.append("unchanged services restarted")
    if w["error"]:
        missed.append("a run failed")
    ok = all(r["current_back"] and r["bad"] and r["rollback_verify"] == "ok"
             and r["old_definition"] == len(w["changed"]) for r in runs)
    if not ok:
        missed.append("not every run ended back on A, verified, with B marked BAD")
    lines += ["", f"Titan target: {verdict(missed)}. Every run: outcome `rolled_back`, exit "
              f"{'/'.join(sorted({str(r['code']) for r in runs}))}; `current` back on A "
              f"{sum(r['current_back'] for r in runs)} of {len(runs)}; B marked BAD "
              f"{sum(r['bad'] for r in runs)} of {len(runs)}; s04, s07, s10 answering `pa` "
              f"again {min(r['old_definition'] for r in runs)} of {len(w['changed'])} (fewest "
              f"over the runs); unchanged services' restarts / pids changed: {unchanged}. "
              f"Reason given: `{runs[0]['reason']}`.", ""]
    lines += ["Steps (median, max in brackets), in ms:", ""]
    lines += _steps_table(runs) + [""]
    over = _over_target_lines(runs, target, lambda r: max(r["steps_sum_ms"], r["wall_back_ms"]),
                              "rollbacks", ("rollback swap", "rollback apply", "rollback verify"))
    lines += over + [""] if over else []
    backs = [dict(r["back"], wall_ms=r["wall_back_ms"]) for r in runs if r.get("back")]
    if backs:
        lines += [_start_log_lines(backs, "the way back")[0].replace(
            "t0 →", "the failed `verify` line →").replace(
            "that → the end", "that → the `rollback verify` line"), ""]
    return lines


def deploys_section(results, meta):
    lines = [DEPLOYS_BEGIN] + _header(
        "## Deploys: switch and rollback (titan-supervisor vs PM2 vs docker-compose)", meta)
    lines += ["Reproduce: `bench/setup.sh && " + meta["command"] + "` (its own private dockerd "
              "and registry for C2-switch; `--quick` for a smoke run with fewer repetitions).",
              f"Native services: the release-built `{meta['service']}`."
              + (f" Containers: `{meta['image']}` (FROM scratch, the test service alone), and "
                 f"its variant `{results['C2-SWITCH']['variant']}`."
                 if "C2-SWITCH" in results else ""), ""]
    if "N-SWITCH" in results:
        w = results["N-SWITCH"]
        target = w["ready_ms"] * 3 + 100
        lines += [f"### N-switch — 16 native services, 3 changed in 3 successive tiers "
                  f"({w['reps']} switches per row, A → B → A …)", "",
                  f"Titan target: `switch` wall time ≤ 3 × readiness + 100 ms = 3 × "
                  f"{w['ready_ms']} ms + 100 ms = **{target} ms** (held at the median and p90), "
                  "0 restarts of the 13 unchanged services.", ""]
        lines += table(["way", "wall median", "p90", "min – max",
                        "changed services ready again (start log), median",
                        "unchanged: restarts / pids changed", "changed: recreated / new "
                        "definition", "ordering violations per switch", "titan target"],
                       nswitch_rows(w))
        titan = next((r for r in w["rows"] if r["key"] == "titan" and r["runs"]), None)
        if titan:
            lines += ["", "titan-supervisor's steps (progress lines' `ms`, median, max in "
                      "brackets), in ms:", ""]
            lines += _steps_table(titan["runs"])
            lines += [""] + _start_log_lines(titan["runs"], "titan-supervisor's switch")
            over = _over_target_lines(titan["runs"], target)
            lines += [""] + over if over else []
        notes = [f"{row['label']}: {n}" for row in w["rows"] for n in row["notes"]]
        lines += [""] + ([f"- {n}" for n in notes] + [""] if notes else [])
    if "C2-SWITCH" in results:
        w = results["C2-SWITCH"]
        lines += [f"### C2-switch — 16 containers, 3 with a new image in 3 successive tiers "
                  f"({w['reps']} switches per row, A → B → A …)", "",
                  f"Titan target: `switch` wall time ≤ **{CSWITCH_TARGET_MS / 1000:g} s** (held "
                  "at the median and p90), 0 of the 13 unchanged containers restarted or "
                  "replaced.", ""]
        lines += table(["way", "wall median", "p90", "min – max",
                        "changed services ready again (start log), median", "peer's own end",
                        "unchanged containers changed (`.Id`/`.State.StartedAt`) / restarts",
                        "changed: recreated / running the new image",
                        "ordering violations per switch", "titan target"], cswitch_rows(w))
        titan = next((r for r in w["rows"] if r["key"] == "titan" and r["runs"]), None)
        if titan:
            lines += ["", "titan-supervisor's steps (progress lines' `ms`, median, max in "
                      "brackets), in ms:", ""]
            lines += _steps_table(titan["runs"])
            lines += [""] + _start_log_lines(titan["runs"], "titan-supervisor's switch")
            over = _over_target_lines(titan["runs"], CSWITCH_TARGET_MS)
            lines += [""] + over if over else []
        compose = next((r for r in w["rows"] if r["key"] == "compose" and r["runs"]), None)
        if compose:
            lines += [""] + _start_log_lines(compose["runs"], "docker-compose's `up -d`")
            if compose.get("noop_up_ms") is not None:
                lines += ["", f"For scale, in the same session before the switches: `docker-compose "
                          f"up -d` of release A's file again, nothing to change, returned after "
                          f"{ms(compose['noop_up_ms'])} (containers touched: "
                          f"{compose['noop_touched']}): what compose spends checking the 16 "
                          "services (and waiting on each dependency's health status) before it "
                          "touches anything."]
        notes = [f"{row['label']}: {n}" for row in w["rows"] for n in row["notes"]]
        lines += [""] + ([f"- {n}" for n in notes] + [""] if notes else [])
    if "C3-ROLLBACK" in results:
        lines += rollback_lines(results["C3-ROLLBACK"])
        lines += [f"- {n}" for n in results["C3-ROLLBACK"]["notes"]]
    lines += ["Reading the tables:", ""] + [f"- {r}" for r in DEPLOYS_READING]
    lines += ["", DEPLOYS_END]
    return "\n".join(lines)
