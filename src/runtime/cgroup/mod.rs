//! Per-service cgroups under the supervisor's own cgroup: a hard memory cap, an optional pids
//! cap, and the service's processes counted, measured and killed as one group.
//!
//! Layout: each service gets `<own>/<prefix>-<service>`, where `<own>` is the supervisor's own
//! cgroup (from `/proc/self/cgroup`). On cgroup v1 that is one directory per controller: the
//! memory hierarchy always (it is where the service's processes are listed and killed from)
//! and the pids hierarchy when `pids_max` is set. On v2 it is one directory.
//!
//! A service joins its cgroups between fork and exec: the spawner's child calls
//! [`join_current`] with [`ServiceCgroup::join_files`], pre-built C strings, so the child
//! neither allocates nor takes a lock. Limits are written before any process joins and read
//! back; a limit the kernel did not take is an error that names the file, never a warning.
//!
//! v2's "no internal processes" rule: a non-root cgroup that hands controllers to children in
//! `cgroup.subtree_control` must not hold processes itself. When controllers still need
//! enabling and our own cgroup holds processes (the supervisor, started there by systemd), we
//! first move every process of it into the leaf `<own>/supervisor` ([`SUPERVISOR_LEAF`]); a
//! later [`Cgroups::detect`] sees through that leaf. Under systemd this needs `Delegate=yes`
//! on the supervisor's unit; without it the write fails and [`CgroupError::SubtreeBusy`] or
//! [`CgroupError::NoController`] says so.
//!
//! Swap: with a memory cap, swap is capped too (v1 `memory.memsw.limit_in_bytes` = the cap;
//! v2 `memory.swap.max` = 0) where those files exist, so the cap is on RAM + swap.

mod detect;
mod fsio;
mod v1;
mod v2;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use v2::SUPERVISOR_LEAF;

/// Where this process's cgroups are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1 (or hybrid): each mounted controller -> our own cgroup directory in it.
    V1 { controllers: BTreeMap<String, PathBuf> },
    /// cgroup v2: our own cgroup directory in the unified hierarchy.
    V2 { own: PathBuf },
}

/// Limits for one service's cgroup. `None` writes "unlimited" (so a reused cgroup loses stale
/// limits); the pids controller is only required when `pids_max` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes; the kernel rounds it down to a whole page.
    pub memory_max: Option<u64>,
    pub pids_max: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("cgroup controller `{controller}` is not available: {hint}")]
    NoController { controller: String, hint: String },
    #[error("invalid cgroup name part {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} already exists and still holds {} process(es): {pids:?}", .pids.len())]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} reads back {got:?} after writing {wanted:?}: the limit was not applied")]
    Readback { path: PathBuf, wanted: String, got: String },
    #[error(
        "cannot enable {controllers} in {path}: {source}; cgroup v2 forbids processes in a \
         cgroup that distributes controllers; give the supervisor a delegated cgroup of its own \
         (systemd: Delegate=yes)"
    )]
    SubtreeBusy {
        path: PathBuf,
        controllers: String,
        #[source]
        source: io::Error,
    },
}

/// This process's own cgroups, where service cgroups are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    hierarchy: Hierarchy,
}

impl Cgroups {
    /// Reads `/proc/self/cgroup` and `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let cgroup = fsio::read(Path::new("/proc/self/cgroup"))?;
        let mountinfo = fsio::read(Path::new("/proc/self/mountinfo"))?;
        Self::from_proc(&cgroup, &mountinfo, Path::new("/"))
    }

    /// Same from given texts, with mount points re-rooted under `fs_root` (for temp-dir
    /// fixtures). On v2, an own cgroup named [`SUPERVISOR_LEAF`] means we moved ourselves
    /// there: its parent is the own cgroup.
    pub fn from_proc(proc_self_cgroup: &str, mountinfo: &str, fs_root: &Path) -> Result<Self, CgroupError> {
        let hierarchy = match detect::hierarchy(proc_self_cgroup, mountinfo, fs_root)? {
            Hierarchy::V2 { own } if own.file_name() == Some(SUPERVISOR_LEAF.as_ref()) => {
                let own = own.parent().map_or(own.clone(), Path::to_path_buf);
                Hierarchy::V2 { own }
            }
            other => other,
        };
        Ok(Self { hierarchy })
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self.hierarchy {
            Hierarchy::V1 { .. } => 1,
            Hierarchy::V2 { .. } => 2,
        }
    }

    /// Creates (or reuses, if it holds no process) `<own>/<prefix>-<service>` in every
    /// controller needed (v1: memory, and pids when `pids_max` is set; v2: one directory,
    /// enabling +memory (+pids) in our `cgroup.subtree_control` if needed). Writes the limits
    /// and reads them back. On error, directories made by this call are removed again.
    pub fn create(&self, prefix: &str, service: &str, limits: &Limits) -> Result<ServiceCgroup, CgroupError> {
        let name = cgroup_name(prefix, service)?;
        match &self.hierarchy {
            Hierarchy::V1 { controllers } => v1::create(controllers, &name, limits),
            Hierarchy::V2 { own } => v2::create(own, &name, limits),
        }
    }

    /// The services that have a cgroup of `prefix` here (`<prefix>-<service>`), left by this
    /// or an earlier supervisor.
    pub fn services(&self, prefix: &str) -> Vec<String> {
        let main = match &self.hierarchy {
            Hierarchy::V1 { controllers } => controllers.get("memory").cloned(),
            Hierarchy::V2 { own } => Some(own.clone()),
        };
        let Some(entries) = main.and_then(|dir| std::fs::read_dir(dir).ok()) else { return Vec::new() };
        let lead = format!("{prefix}-");
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.strip_prefix(&lead).map(str::to_owned))
            .collect()
    }

    /// The service's cgroup if it is already there (left by a previous supervisor run), so its
    /// leftover processes can be killed and the directories removed. Nothing is written.
    pub fn existing(&self, prefix: &str, service: &str) -> Result<Option<ServiceCgroup>, CgroupError> {
        let name = cgroup_name(prefix, service)?;
        let (flavor, dirs) = match &self.hierarchy {
            Hierarchy::V1 { controllers } => (Flavor::V1, v1::existing(controllers, &name)?),
            Hierarchy::V2 { own } => (Flavor::V2, vec![own.join(&name)]),
        };
        match dirs.first() {
            Some(main) if main.is_dir() => ServiceCgroup::new(flavor, dirs).map(Some),
            _ => Ok(None),
        }
    }
}

/// `<prefix>-<service>`, refusing parts that would leave the directory or name nothing.
fn cgroup_name(prefix: &str, service: &str) -> Result<String, CgroupError> {
    for part in [prefix, service] {
        let reason = if part.is_empty() {
            "it is empty"
        } else if part.contains(['/', '\0']) {
            "it contains `/` or a NUL byte"
        } else if part.len() > 100 {
            "it is longer than 100 bytes"
        } else {
            continue;
        };
        return Err(CgroupError::InvalidName { name: part.to_string(), reason });
    }
    Ok(format!("{prefix}-{service}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V1,
    V2,
}

/// How many times [`ServiceCgroup::kill_all`] looks again for processes before giving up.
const KILL_ROUNDS: u32 = 100;
/// The longest pause between two rounds (they start at 1 ms and double): about 4 s in all.
const KILL_PAUSE_MAX: Duration = Duration::from_millis(50);

/// One service's cgroup directories.
#[derive(Debug)]
pub struct ServiceCgroup {
    flavor: Flavor,
    /// v1: the memory cgroup; v2: the cgroup. Processes are listed and counted here.
    main: PathBuf,
    /// Every directory, `main` first (v1: then the pids cgroup if any).
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of every directory, for [`join_current`].
    join: Vec<CString>,
}

impl ServiceCgroup {
    fn new(flavor: Flavor, dirs: Vec<PathBuf>) -> Result<Self, CgroupError> {
        let join =
            dirs.iter().map(|d| fsio::c_path(d.join("cgroup.procs"))).collect::<Result<Vec<_>, _>>()?;
        let main = dirs.first().cloned().ok_or_else(|| CgroupError::Parse {
            what: "service cgroup".into(),
            detail: "no directory".into(),
        })?;
        Ok(Self { flavor, main, dirs, join })
    }

    /// Every directory of this cgroup (v1: memory first, then pids if any).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files a forked child writes "0" to, via [`join_current`].
    pub fn join_files(&self) -> &[CString] {
        &self.join
    }

    /// Every process inside, as listed by (v1: the memory cgroup's) `cgroup.procs`. A 0 stands
    /// for a process outside our pid namespace.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        fsio::read_pids(&self.main.join("cgroup.procs"))
    }

    /// SIGKILLs every process inside, looking again until the cgroup is empty: v2 writes
    /// `cgroup.kill` when the kernel has it (5.14+), otherwise each listed pid is killed, which
    /// also catches processes forked meanwhile. Returns how many processes were signalled (0 if
    /// the cgroup is gone already); an error if some remain after about 4 s. Blocking: call it
    /// off the async runtime.
    pub fn kill_all(&self) -> io::Result<usize> {
        let procs = self.main.join("cgroup.procs");
        let kill_file = self.main.join("cgroup.kill");
        let use_kill_file = self.flavor == Flavor::V2 && kill_file.exists();
        let me = std::process::id();
        let mut signalled = BTreeSet::new();
        let mut pause = Duration::from_millis(1);
        for _ in 0..KILL_ROUNDS {
            // 0 is a process outside our pid namespace; kill(0) would hit our own group.
            let listed = match fsio::read_pids(&procs) {
                // Removed already: nothing can be inside.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                other => other?,
            };
            let pids: Vec<i32> = listed.into_iter().filter(|p| *p > 0 && p.unsigned_abs() != me).collect();
            if pids.is_empty() {
                return Ok(signalled.len());
            }
            if use_kill_file {
                std::fs::write(&kill_file, "1").map_err(|e| fsio::with_path(e, &kill_file))?;
                signalled.extend(pids);
            } else {
                for pid in pids {
                    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                        Ok(()) => drop(signalled.insert(pid)),
                        Err(Errno::ESRCH) => {}
                        Err(e) => return Err(io::Error::other(format!("kill {pid}: {e}"))),
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(KILL_PAUSE_MAX);
        }
        let left = fsio::read_pids(&procs)?;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: {left:?} still there after SIGKILL", procs.display()),
        ))
    }

    /// How many times the kernel's OOM killer killed a process in this cgroup: v2 the
    /// `oom_kill` line of `memory.events`; v1 the `oom_kill` line of `memory.oom_control`
    /// (kernel 4.13+). Without that line this is an error: `under_oom` and `memory.failcnt`
    /// count other things (being at the limit, failed charges) and are not used instead.
    pub fn oom_kills(&self) -> io::Result<u64> {
        let file = match self.flavor {
            Flavor::V1 => "memory.oom_control",
            Flavor::V2 => "memory.events",
        };
        let path = self.main.join(file);
        fsio::keyed_value(&path, "oom_kill")?
            .ok_or_else(|| fsio::bad_data(&path, "no `oom_kill` line (kernel older than 4.13?)"))
    }

    /// Bytes charged to the cgroup now: v2 `memory.current`, v1 `memory.usage_in_bytes`.
    pub fn memory_current(&self) -> io::Result<u64> {
        let file = match self.flavor {
            Flavor::V1 => "memory.usage_in_bytes",
            Flavor::V2 => "memory.current",
        };
        fsio::number(&self.main.join(file))
    }

    /// Removes every directory (call [`Self::kill_all`] first: a cgroup with processes cannot
    /// be removed). Directories already gone are fine.
    pub fn remove(&self) -> io::Result<()> {
        for dir in self.dirs.iter().rev() {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(fsio::with_path(e, dir));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Moves the calling process into every cgroup of `files` (`cgroup.procs` paths) by writing
/// "0" to each. Async-signal-safe, for a forked child before exec: raw open/write/close, no
/// allocation, no lock. Returns the errno of the first failure.
pub fn join_current(files: &[CString]) -> Result<(), i32> {
    for file in files {
        let fd = open_write_only(file)?;
        let written = write_zero(fd);
        // SAFETY: `fd` was opened above and is closed exactly once.
        unsafe { libc::close(fd) };
        written?;
    }
    Ok(())
}

/// `open(path, O_WRONLY | O_CLOEXEC)`, retried on EINTR. Async-signal-safe.
fn open_write_only(path: &CString) -> Result<libc::c_int, i32> {
    loop {
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            return Ok(fd);
        }
        let errno = Errno::last_raw();
        if errno != libc::EINTR {
            return Err(errno);
        }
    }
}

/// Writes the single byte "0" to `fd`, retried on EINTR. Async-signal-safe.
fn write_zero(fd: libc::c_int) -> Result<(), i32> {
    loop {
        // SAFETY: `fd` is open, and the buffer is a 1-byte static.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err(libc::EIO),
            _ => {
                let errno = Errno::last_raw();
                if errno != libc::EINTR {
                    return Err(errno);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
