"""Outside observation and cleanup of processes: /proc readings, port probes, deadlines, and the
sweep that kills every process a session left behind (found by the session directory in its
command line, which every process we launch carries)."""

import errno
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class BenchError(Exception):
    """A workload could not be measured; the message says why."""


def wait_until(what, cond, timeout, interval=0.01):
    """Polls cond() until it returns a truthy value, which is returned; BenchError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def run_cmd(args, timeout, env=None, log=None):
    """Runs a short command with a deadline; BenchError when it fails or overruns."""
    try:
        done = subprocess.run(args, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(map(str, args[:3]))} ... took over {timeout} s") from e
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(map(str, args))}\n{done.stdout}\n")
    if done.returncode != 0:
        tail = done.stdout.strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(map(str, args[:3]))} ... exited {done.returncode}: "
                         + " | ".join(tail))
    return done.stdout


# --- ports -------------------------------------------------------------------------------------

def port_answers(port):
    """True when a TCP connect to 127.0.0.1:port succeeds (the test service binds only when ready)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


def port_free(port):
    """True when nothing listens on 127.0.0.1:port (bound as the test service binds, SO_REUSEADDR)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return False
        raise
    finally:
        s.close()


def ephemeral_range():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = map(int, f.read().split())
    return lo, hi


def check_ports_free(ports):
    lo, hi = ephemeral_range()
    inside = [p for p in ports if lo <= p <= hi]
    if inside:
        raise BenchError(f"port {inside[0]} is inside the ephemeral range {lo}-{hi} "
                         "(net.ipv4.ip_local_port_range): outgoing connections could take it")
    busy = [p for p in ports if not port_free(p)]
    if busy:
        shown = ", ".join(map(str, busy[:10])) + (" ..." if len(busy) > 10 else "")
        raise BenchError(f"ports already in use: {shown}")


# --- /proc -------------------------------------------------------------------------------------

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def proc_state(pid):
    """The one-letter state of pid ('R', 'S', 'Z', ...), or None when it is gone."""
    try:
        return _stat_fields(pid)[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def proc_dead(pid):
    """True once every thread of pid has exited (its files are closed then): a zombie thread
    group leader alone is not enough, its other threads may still hold the listening socket."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return True
    return all(proc_state(f"{pid}/task/{tid}") in (None, "Z", "X") for tid in tids)


def proc_cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def proc_age(pid):
    """Seconds since pid started."""
    start_ticks = int(_stat_fields(pid)[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / CLK_TCK


def proc_memory(pid):
    """(VmRSS, Pss, RssFile) of pid in KiB; Pss from smaps_rollup (None where the kernel lacks
    it). RssFile is the file-backed part of VmRSS: mostly the executable and its libraries."""
    rss = pss = rss_file = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssFile:"):
                rss_file = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except FileNotFoundError:
        pass
    return rss, pss, rss_file


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def pids_mentioning(text):
    """Every live process (not us) whose command line contains text."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and text in cmdline(entry):
            if proc_state(entry) not in (None, "Z"):
                found.append(int(entry))
    return found


def read_pid_file(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def killpg_quietly(pgid, sig=signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def sweep(marker, timeout=5.0):
    """SIGKILLs every process whose command line contains marker, until none is left.
    Returns the command lines found on the first pass (none: the supervisor cleaned up itself)."""
    first = {pid: cmdline(pid) for pid in pids_mentioning(marker)}
    for pid in first:
        kill_quietly(pid)

    def none_left():
        left = pids_mentioning(marker)
        for pid in left:
            kill_quietly(pid)
        return not left

    wait_until(f"processes mentioning {marker} to die", none_left, timeout, 0.02)
    return list(first.values())


def stop_popen(proc, sig=signal.SIGTERM, timeout=30.0):
    """Sends sig to a process we launched, waits up to timeout, then SIGKILLs its process group.
    Returns its exit status (None when it had to be killed)."""
    if proc.poll() is not None:
        return proc.returncode
    kill_quietly(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        killpg_quietly(proc.pid)
        kill_quietly(proc.pid)
        proc.wait(5)
        return None


def _cpu_times():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]          # all, idle + iowait


def wait_quiet(busy_below=0.15, window_s=1.0, timeout=60.0):
    """Waits until the machine's CPUs are less than `busy_below` busy over a `window_s` window
    (another workload's tail, dockerd's removals, must not weigh on the next one), or
    `timeout`; returns how busy the last window was."""
    deadline = time.monotonic() + timeout
    while True:
        total0, idle0 = _cpu_times()
        time.sleep(window_s)
        total1, idle1 = _cpu_times()
        busy = 1 - (idle1 - idle0) / max(1, total1 - total0)
        if busy < busy_below or time.monotonic() > deadline:
            return busy
