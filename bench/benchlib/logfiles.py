"""W5, read from the files alone: when the last line of every service is on disk (a cheap poll of
the plain files while the services write), when no rotation or compression is left to do, and
then every numbered line of every file, plain and gzipped, current and rotated: lost,
duplicated and broken lines, the largest file, the number of files.

A service's files are read oldest first, as one stream: a line that a rotation cut in two (PM2
and supervisord rotate between two writes, not between two lines) is joined again and counted
once, in the file where it starts, and the cut is counted apart. titan-supervisor's records are
`<timestamp> <out|err>[+] <line>`; the prefix is stripped and `+` records are joined to the
next one. A numbered line is `<name> out <seq:010> xxx…`, exactly `line_bytes` bytes with its
newline: anything else that holds a name header or a run of x is a broken line."""

import gzip
import os
import time
import zlib
from array import array

from .procs import BenchError, proc_state

POLL_S = 0.010              # the poll: stat the plain files, read the tail of those that changed
QUIET_S = 3.0               # services gone and no log grown for this long: capture over
STABLE_S = 0.2              # nothing left to rotate or compress for this long: settled
TAIL = 64 * 1024            # nothing follows a service's last line but a note or two


def _read_plain(path, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return None


def _read_tail(path, size):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, size - TAIL))
            return f.read(TAIL)
    except FileNotFoundError:
        return b""


def _read_gz(path):
    """(content, complete): complete is False for a truncated or damaged stream, whose readable
    part is returned."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, True
    try:
        return gzip.decompress(raw), True
    except (EOFError, OSError, zlib.error):
        d = zlib.decompressobj(wbits=31)
        try:
            return d.decompress(raw), False
        except zlib.error:
            return b"", False


class Watch:
    """Polls a session's log files while the services write and the supervisor rotates."""

    def __init__(self, sess, flood):
        self.sess, self.flood = sess, flood
        self.sizes = {}            # inode -> size at the last poll
        self.current = set()       # inodes seen as a file being written (renamed ones included)
        self.last = {s.name: f"{s.name} out {flood.lines:010d} ".encode() for s in flood.services}
        self.seen = {s.name: False for s in flood.services}
        self.peak = (0, None)      # the largest plain file seen: (bytes, name)
        self.grown_ns = time.time_ns()

    def poll(self):
        """Looks at the plain files that changed since the last poll; True once the last line of
        every service has been seen in one."""
        for svc in self.flood.services:
            for path, kind in self.sess.log_files(svc):
                if kind not in ("current", "plain"):
                    continue
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if st.st_size > self.peak[0]:
                    self.peak = (st.st_size, path.name)
                before = self.sizes.get(st.st_ino)
                if before == st.st_size:
                    continue
                self.sizes[st.st_ino] = st.st_size
                if kind == "current":
                    self.current.add(st.st_ino)
                # the services' output grew (not a copy that a rotation is writing)
                if st.st_ino in self.current and st.st_size > (before or 0):
                    self.grown_ns = time.time_ns()
                if not self.seen[svc.name] and self.last[svc.name] in _read_tail(path, st.st_size):
                    self.seen[svc.name] = True
        return all(self.seen.values())

    def search_gz(self):
        """Looks for the missing last lines in the gzipped files too (a capture whose last lines
        were rotated and compressed between two polls)."""
        for svc in self.flood.services:
            if self.seen[svc.name]:
                continue
            for path, kind in self.sess.log_files(svc):
                if kind == "gz":
                    data, _ = _read_gz(path)
                    if data and self.last[svc.name] in data:
                        self.seen[svc.name] = True
        return all(self.seen.values())

    def services_gone(self):
        for svc in self.flood.services:
            pid = self.sess.pid_of(svc)
            if pid is None or proc_state(pid) not in (None, "Z"):
                return False
        return True

    def run(self, timeout, alive):
        """(captured_ns, complete, settled_ns). captured: wall-clock ns when the last line of
        every service was on disk; complete False when the services are gone and their logs
        stopped growing without it (captured is then when they last grew). settled: when no
        rotation or compression was left to do, for good (STABLE_S), at or after captured."""
        deadline = time.monotonic() + timeout
        captured = complete = idle_since = None
        while True:
            alive()
            done = self.poll()
            now = time.time_ns()
            if any(self.sess.log_pending(s) for s in self.flood.services):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if captured is None:
                if done:
                    captured, complete = now, True
                elif self.services_gone() and now - self.grown_ns > QUIET_S * 1e9:
                    captured, complete = self.grown_ns, self.search_gz()
            if captured is not None and idle_since is not None \
                    and now - max(idle_since, captured) >= STABLE_S * 1e9:
                return captured, complete, max(idle_since, captured)
            if time.monotonic() > deadline:
                what = ("the last lines on disk" if captured is None else
                        "rotations and compressions to finish")
                raise BenchError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last lines seen: {self.seen})")
            time.sleep(POLL_S)


# --- the final count ---------------------------------------------------------------------------

def _ranges(numbers):
    """Sorted ints as [(first, last), ...] runs."""
    out = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [tuple(r) for r in out]


class _Lines:
    """Line accounting of one service."""

    def __init__(self, name, lines, line_bytes):
        self.name, self.n = name, lines
        self.head = f"{name} out ".encode()
        self.body_len = line_bytes - 1
        self.tail = b" " + b"x" * (line_bytes - 1 - len(self.head) - 11)
        self.where = array("H", bytes(2 * (lines + 1)))   # seq -> 1 + index of its first file
        self.dups = []                                    # (seq, first file, again in file)
        self.broken = self.other = 0

    def add(self, line, file_index):
        h = len(self.head)
        if len(line) == self.body_len and line.startswith(self.head) \
                and line[h + 10:] == self.tail and line[h:h + 10].isdigit():
            seq = int(line[h:h + 10])
            if 1 <= seq <= self.n:
                if self.where[seq]:
                    self.dups.append((seq, self.where[seq] - 1, file_index))
                else:
                    self.where[seq] = file_index + 1
                return
        if line.startswith(self.head) or b"xxxxxxxx" in line:
            self.broken += 1
        else:
            self.other += 1            # the service's own `started` and `ready` lines, notes


def analyse(sess, flood, prefixed):
    """Every numbered line of every file of every service. prefixed: titan's records."""
    result = {"lost": 0, "duplicated": 0, "broken": 0, "split": 0, "files": 0, "gz": 0,
              "largest": (0, None), "over_limit": [], "damaged_gz": [], "bytes_on_disk": 0,
              "detail": []}
    for svc in flood.services:
        acct = _Lines(svc.name, flood.lines, flood.line_bytes)
        files = sess.log_files(svc)
        names = [p.name for p, _ in files]
        carry, pending = b"", b""
        for i, (path, kind) in enumerate(files):
            if kind == "partial":
                result["damaged_gz"].append(f"{path.name} (compression left unfinished)")
                continue
            if kind == "gz":
                data, complete = _read_gz(path)
                if not complete:
                    result["damaged_gz"].append(path.name)
            else:                      # "current" or "plain"
                data = _read_plain(path)
            if data is None:
                continue
            result["files"] += 1
            result["gz"] += kind == "gz"
            result["bytes_on_disk"] += os.stat(path).st_size if path.exists() else 0
            if len(data) > result["largest"][0]:
                result["largest"] = (len(data), path.name)
            if len(data) > flood.max_size:
                result["over_limit"].append((path.name, len(data)))
            if carry:
                result["split"] += 1
            records = (carry + data).split(b"\n")
            carry = records.pop()
            for rec in records:
                if prefixed:
                    parts = rec.split(b" ", 2)
                    if len(parts) < 3:
                        acct.add(rec, i)
                        continue
                    if parts[1].endswith(b"+"):
                        pending += parts[2]
                        continue
                    rec, pending = pending + parts[2], b""
                acct.add(rec, i)
        if carry:                       # the last file ends without a newline
            acct.add(carry.split(b" ", 2)[2] if prefixed and carry.count(b" ") >= 2 else carry,
                     len(files) - 1)
        lost = [s for s in range(1, flood.lines + 1) if not acct.where[s]]
        result["lost"] += len(lost)
        result["duplicated"] += len(acct.dups)
        result["broken"] += acct.broken
        result["detail"].append({"service": svc.name, "files": names,
                                 "lost": _describe_lost(lost, acct, names),
                                 "duplicated": _describe_dups(acct.dups, names),
                                 "broken": acct.broken})
    return result


def _file_of(acct, names, seq):
    if 1 <= seq <= acct.n and acct.where[seq]:
        return names[acct.where[seq] - 1]
    return "none"


def _describe_lost(lost, acct, names, limit=8):
    """Lost runs as 'a–b (n) between FILE and FILE'."""
    out = []
    for a, b in _ranges(lost)[:limit]:
        where = f"after {_file_of(acct, names, a - 1)}" if a > 1 else "the first lines"
        where += f", before {_file_of(acct, names, b + 1)}" if b < acct.n else \
            ", the last lines"
        out.append(f"{a}–{b} ({b - a + 1}) {where}")
    runs = len(_ranges(lost))
    if runs > limit:
        out.append(f"… {runs - limit} more runs")
    return out


def _describe_dups(dups, names, limit=8):
    """Duplicated runs as 'a–b (n) in FILE and again in FILE'."""
    groups = {}
    for seq, first, again in dups:
        groups.setdefault((first, again), []).append(seq)
    out = []
    for (first, again), seqs in sorted(groups.items(), key=lambda kv: min(kv[1])):
        for a, b in _ranges(sorted(set(seqs))):
            out.append(f"{a}–{b} ({b - a + 1}) in {names[first]} and again in {names[again]}")
    return out[:limit] + ([f"… {len(out) - limit} more runs"] if len(out) > limit else [])
