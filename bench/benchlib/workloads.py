"""The workloads, each run on one supervisor in one mode and returning plain dicts of figures.
Everything is measured from outside: the services' own start-log timestamps, connects to their
ports, /proc of the supervisor's daemon process, and (W5) the log files."""

import os
import signal
import time

from . import logfiles
from .procs import (BenchError, port_answers, proc_age, proc_cpu_seconds, proc_dead,
                    proc_memory, proc_state, wait_until)
from .topology import all_ready, bring_up, read_start_log

PORT_POLL_S = 0.010        # the scripted gate's poll of a tier's ports
KILL_POLL_S = 0.0002       # W2's poll of the killed service's port


def _alive(sess):
    """Fails fast when the supervisor we launched died during a wait."""
    if sess.proc is not None and sess.proc.poll() is not None:
        raise BenchError(f"{sess.sup.label} exited {sess.proc.returncode} "
                         f"(see {sess.proc.args[0]} output in {sess.dir})")


def _wait_all_ready(sess, timeout):
    def ready():
        _alive(sess)
        return all_ready(sess.graph, sess.start_log)
    wait_until(f"all {len(sess.graph.services)} services ready", ready, timeout, 0.02)


def _gate(sess, timeout):
    """The scripted gate: start a tier, poll its ports every 10 ms until all answer, next tier."""
    for i, tier in enumerate(sess.graph.tiers):
        sess.start_tier(i)
        waiting = {s.port for s in tier}

        def tier_up():
            _alive(sess)
            waiting.difference_update([p for p in waiting if port_answers(p)])
            return not waiting
        wait_until(f"tier {i + 1}'s ports", tier_up, timeout, PORT_POLL_S)


def _memory(pid):
    rss, pss, rss_file = proc_memory(pid)
    return {"rss_kib": rss, "pss_kib": pss, "rss_file_kib": rss_file}


def bringup(sup, mode, graph, sdir, timeout, measure_memory=False):
    """W1/W4: one cold bring-up. Returns bring-up figures (and daemon memory 1 s after)."""
    with sup.session(graph, sdir, mode) as sess:
        sess.launch()
        if mode == "gate":
            _gate(sess, timeout)
        _wait_all_ready(sess, timeout)
        result = bring_up(graph, sess.start_log, sess.t0_ns)
        if measure_memory:
            time.sleep(1.0)        # let the supervisor settle after the burst of starts
            result.update(_memory(sess.daemon_pid()))
    result["notes"] = sess.notes
    return result


def _settled(sess, svc):
    """The service's pid once it runs, has run over 1 s and answers on its port."""
    pid = sess.pid_of(svc)
    try:
        if pid and proc_state(pid) not in (None, "Z") and proc_age(pid) > 1.0:
            return pid if port_answers(svc.port) else None
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _kill_once(sess, svc):
    """SIGKILLs svc; returns (wall ns of the kill, ms from kill to its port answering again)."""
    pid = wait_until(f"{svc.name} up for over 1 s", lambda: _settled(sess, svc), 30)
    wall = time.time_ns()
    t = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    # Until every thread of the old process is gone its listener may still answer.
    wait_until(f"{svc.name} (pid {pid}) to die", lambda: proc_dead(pid), 5, KILL_POLL_S)
    wait_until(f"{svc.name} to listen again", lambda: port_answers(svc.port), 30, KILL_POLL_S)
    listen_ms = (time.perf_counter() - t) * 1000
    # Back for good (over 1 s old) before the next kill, whichever service that targets.
    wait_until(f"{svc.name} to run for over 1 s again", lambda: _settled(sess, svc), 30)
    return wall, listen_ms


def restarts(sup, graph, sdir, kills):
    """W2: kill -9 a service (rotating) `kills` times; kill -> listening and kill -> spawned."""
    with sup.session(graph, sdir, "native") as sess:
        sess.launch()
        _wait_all_ready(sess, 30)
        done = []
        for i in range(kills):
            svc = graph.services[i % len(graph.services)]
            _alive(sess)
            done.append((svc, *_kill_once(sess, svc)))
        events = read_start_log(sess.start_log)
    spawn_ms = []
    for svc, wall, _ in done:
        after = [ns for ns in events[svc.name]["start"] if ns > wall]
        spawn_ms.append((after[0] - wall) / 1e6)
    # Starts beyond the first one and one per kill: restarts that failed or were not ours.
    extra = sum(len(e["start"]) - 1 for e in events.values()) - len(done)
    notes = sess.notes + ([f"{extra} start(s) beyond one per kill"] if extra else [])
    odd = sum(1 for (_, _, lst), spn in zip(done, spawn_ms) if spn > lst + 0.5)
    if odd:
        notes.append(f"{odd} kill(s) where the new process logged its start after its port "
                     "answered (clock skew?)")
    return {"listen_ms": [ms for _, _, ms in done], "spawn_ms": spawn_ms, "notes": notes}


def idle(sup, graph, sdir, seconds):
    """W3: the daemon's memory and CPU over `seconds` of idling with every service up."""
    with sup.session(graph, sdir, "native") as sess:
        sess.launch()
        _wait_all_ready(sess, 30)
        pid = sess.daemon_pid()
        time.sleep(2.0)            # past the bring-up burst
        cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
        peak = 0
        while time.monotonic() - t0 < seconds:
            _alive(sess)
            peak = max(peak, proc_memory(pid)[0])
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - t0))))
        cpu1, elapsed = proc_cpu_seconds(pid), time.monotonic() - t0
        result = _memory(pid)
        result.update(peak_rss_kib=max(peak, result["rss_kib"]), cpu_s=cpu1 - cpu0,
                      seconds=elapsed, cpu_s_per_30s=(cpu1 - cpu0) * 30 / elapsed,
                      still_up=sum(port_answers(s.port) for s in graph.services))
    result["notes"] = sess.notes
    return result


def flood(sup, mode, graph, sdir, timeout):
    """W5: every service prints its numbered lines as fast as it can and exits; the supervisor
    captures, rotates and (titan, PM2) compresses. Times are from the first service's own start
    (its start-log line), so they leave out how long each supervisor takes to boot."""
    with sup.session(graph, sdir, mode) as sess:
        sess.launch()
        watch = logfiles.Watch(sess, graph)
        alive = lambda: _alive(sess)
        captured_ns, complete, settled_ns = watch.run(timeout, alive)
        cpu = sess.log_cpu()
        events = read_start_log(sess.start_log)
        starts = [ns for e in events.values() for ns in e["start"]]
        if len(starts) != len(graph.services):
            raise BenchError(f"{len(starts)} service start(s) logged for "
                             f"{len(graph.services)} services (a restart?)")
        t0 = min(starts)
        counts = logfiles.analyse(sess, graph, prefixed=(sup.key == "titan"))
    peak_bytes, peak_file = max(watch.peak, counts["largest"], key=lambda p: p[0])
    notes = list(sess.notes)
    return {"capture_s": (captured_ns - t0) / 1e9, "complete": complete,
            "settled_s": (settled_ns - t0) / 1e9, "cpu": cpu,
            "cpu_s": sum(v for k, v in cpu.items() if not k.startswith("of which")),
            "lost": counts["lost"], "duplicated": counts["duplicated"],
            "broken": counts["broken"], "split": counts["split"], "files": counts["files"],
            "gz": counts["gz"],
            "largest": peak_bytes, "largest_file": peak_file,
            "over_limit": counts["over_limit"], "damaged_gz": counts["damaged_gz"],
            "disk_mib": counts["bytes_on_disk"] / 2**20,
            "_detail": counts["detail"], "notes": notes}
