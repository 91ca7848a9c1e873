//! Spawning native services and exec probes (a vfork-style clone, then exec). Everything the child needs is prepared in the
//! parent (`Prepared`), so that between fork and exec the child only makes async-signal-safe
//! system calls: no allocation, no locks. The child gets its own session and process group,
//! joins its cgroup, gets the pipes as stdout/stderr, drops privileges, and execs. Nobody here
//! waits for children: `reaper` owns waitpid.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;
use nix::unistd::Pid;

use super::credentials::Credentials;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("program {program:?} not found in PATH")]
    NotFound { program: String },
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("cannot create pipe: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("fork failed: {0}")]
    Fork(#[source] nix::Error),
    #[error("{step} failed in the child: {errno}")]
    Child { step: &'static str, errno: nix::Error },
}

/// What to run, as given by the caller.
pub(crate) struct Command<'a> {
    pub(crate) argv: &'a [String],
    /// How errors name the program: argv[0], or `***` when it holds a secret.
    pub(crate) name: &'a str,
    /// The complete environment (nothing is inherited).
    pub(crate) env: &'a [(String, String)],
    pub(crate) cwd: Option<&'a Path>,
    pub(crate) credentials: Option<&'a Credentials>,
    /// `cgroup.procs` files to join before exec.
    pub(crate) cgroup_join: &'a [CString],
    /// Write ends for stdout and stderr; `None` means /dev/null.
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
}

/// A command turned into C strings and pointer arrays, ready for a fork.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
    dev_null: CString,
}

fn cstring(bytes: &[u8], what: &'static str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul { what })
}

fn prepare(cmd: &Command<'_>) -> Result<Prepared, SpawnError> {
    let first = cmd.argv.first().map(String::as_str).unwrap_or_default();
    let path_var = cmd.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
    let program = resolve_program(first, path_var, cmd.cwd).map_err(|e| match e {
        SpawnError::NotFound { .. } => SpawnError::NotFound { program: cmd.name.to_owned() },
        other => other,
    })?;
    Ok(Prepared {
        program: cstring(program.as_os_str().as_bytes(), "program path")?,
        argv: cmd.argv.iter().map(|a| cstring(a.as_bytes(), "an argument")).collect::<Result<_, _>>()?,
        envp: cmd
            .env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes(), "an environment variable"))
            .collect::<Result<_, _>>()?,
        cwd: cmd.cwd.map(|c| cstring(c.as_os_str().as_bytes(), "cwd")).transpose()?,
        dev_null: c"/dev/null".to_owned(),
    })
}

/// Finds `program` like execvp would: a path with a slash is used as is (relative to `cwd`),
/// a bare name is looked up in PATH.
pub(crate) fn resolve_program(
    program: &str,
    path: Option<&str>,
    cwd: Option<&Path>,
) -> Result<PathBuf, SpawnError> {
    let not_found = || SpawnError::NotFound { program: program.to_owned() };
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        return Ok(match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        });
    }
    let path = path.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::split_paths(OsStr::new(path))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Steps of the child, reported back through the exec-status pipe when one fails.
const STEPS: [&str; 9] = [
    "setsid",
    "join cgroup",
    "redirect stdio",
    "reset signals",
    "setgroups",
    "setgid/setuid",
    "chdir",
    "setrlimit",
    "exec",
];

/// Test hook: `TITAN_SPAWN_NO_CLOSE_RANGE=1` in the supervisor's environment makes every spawn
/// skip close_range and take the fallback of kernels before 5.11 (see `FdSweep`), so the
/// end-to-end suites can be run on that path on a new kernel.
const NO_CLOSE_RANGE_VAR: &str = "TITAN_SPAWN_NO_CLOSE_RANGE";

/// Where the fallback sweep stops when RLIMIT_NOFILE is higher (or unreadable): 2^20 is the
/// kernel's default `fs.nr_open` and the limit Docker and containerd give. Descriptors are
/// allocated lowest first, so one above it means a million open at once, or a parent of ours
/// that placed one there on purpose.
const FD_SWEEP_CAP: i32 = 1 << 20;

/// How the child makes every descriptor from 3 up close at exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FdSweep {
    /// One `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`, with the loop below if it fails.
    CloseRange,
    /// `fcntl(fd, F_SETFD, FD_CLOEXEC)` on each descriptor below the bound, skipping EBADF.
    Loop,
}

impl FdSweep {
    /// `Loop` when the test hook `TITAN_SPAWN_NO_CLOSE_RANGE=1` is set.
    fn from_env() -> FdSweep {
        match std::env::var_os(NO_CLOSE_RANGE_VAR) {
            Some(v) if v == "1" => FdSweep::Loop,
            _ => FdSweep::CloseRange,
        }
    }
}

/// Whether this kernel has close_range with CLOSE_RANGE_CLOEXEC (Linux 5.11), asked once with
/// a range no descriptor is in.
fn close_range_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: close_range over descriptors nobody has open changes nothing.
    *WORKS.get_or_init(|| unsafe {
        libc::syscall(libc::SYS_close_range, u32::MAX - 1, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0
    })
}

/// One past the highest descriptor the fallback sweep marks: the highest one open now (what a
/// thread opens meanwhile is close-on-exec: Rust opens everything so), within the soft
/// RLIMIT_NOFILE and at most `FD_SWEEP_CAP`. The supervisor raises its own limit to the hard
/// one, which may be 2^20: sweeping to that would cost a spawn 200 ms. Read here in the
/// parent, because the child must not do more than it has to.
fn fd_sweep_bound() -> i32 {
    let highest = std::fs::read_dir("/proc/self/fd")
        .ok()
        .and_then(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).max());
    let soft = soft_bound();
    highest.map_or(soft, |fd| fd.saturating_add(1).min(soft))
}

/// The soft RLIMIT_NOFILE (no descriptor at or above it can be opened or dup'd to), at most
/// `FD_SWEEP_CAP`: the sweep's bound when close_range, found working, fails after all.
fn soft_bound() -> i32 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return FD_SWEEP_CAP;
    }
    i32::try_from(limit.rlim_cur).unwrap_or(FD_SWEEP_CAP).min(FD_SWEEP_CAP)
}

/// The descriptor limit a child gets back: the soft one the supervisor was started with (it
/// raised its own), with the hard limit as it is.
fn services_nofile() -> Option<libc::rlimit> {
    let soft = crate::runtime::rlimit::services_soft()?;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == soft {
        return None;
    }
    Some(libc::rlimit { rlim_cur: soft.min(limit.rlim_max), rlim_max: limit.rlim_max })
}

/// Starts `cmd` in a new process. Returns once the child has exec'd (or reports why it could
/// not; its exit is then reaped like any other and can be ignored).
pub(crate) fn spawn(cmd: Command<'_>) -> Result<Pid, SpawnError> {
    spawn_with(cmd, FdSweep::from_env())
}

/// `spawn`, with the way descriptors are closed at exec chosen by the caller (tests force
/// the fallback with it).
fn spawn_with(cmd: Command<'_>, fd_sweep: FdSweep) -> Result<Pid, SpawnError> {
    let fd_sweep = if close_range_works() { fd_sweep } else { FdSweep::Loop };
    let prepared = prepare(&cmd)?;
    let argv_ptrs: Vec<*const libc::c_char> =
        prepared.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp_ptrs: Vec<*const libc::c_char> =
        prepared.envp.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;
    let child = ChildSetup {
        prepared: &prepared,
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        cgroup_join: cmd.cgroup_join,
        stdout: cmd.stdout.as_ref().map(AsRawFd::as_raw_fd),
        stderr: cmd.stderr.as_ref().map(AsRawFd::as_raw_fd),
        credentials: cmd.credentials.map(|c| (c.uid, c.gid, c.groups.as_slice())),
        status: status_w.as_raw_fd(),
        fd_sweep,
        fd_bound: if fd_sweep == FdSweep::Loop { fd_sweep_bound() } else { soft_bound() },
        nofile: services_nofile(),
    };
    let pid = clone_vfork(&child)?;
    drop(status_w);
    drop(cmd.stdout);
    drop(cmd.stderr);
    read_exec_status(status_r).map(|()| pid)
}

/// Size of the stack the child runs on until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// Starts the child with `clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn does: it shares our
/// memory (no page tables copied, no copy-on-write faults afterwards) and we are suspended
/// until it has exec'd or died. Every signal is blocked across the clone, so no handler of ours
/// runs in the child before it has reset them to their defaults.
fn clone_vfork(child: &ChildSetup<'_>) -> Result<Pid, SpawnError> {
    extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `ChildSetup` borrowed by `clone_vfork`, alive until it returns,
        // which is after this child has exec'd or exited.
        unsafe { (*(arg as *const ChildSetup<'_>)).exec() }
    }
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: one past the end of the allocation, rounded down to the 16-byte alignment the
    // ABI wants; the stack grows down from there.
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    let top = ((top as usize) & !15) as *mut libc::c_void;
    // SAFETY: sigfillset/pthread_sigmask on local sets; clone runs `child_main` on its own
    // stack, and with CLONE_VFORK returns only once the child no longer uses our memory.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let arg = child as *const ChildSetup<'_> as *mut libc::c_void;
        let pid = libc::clone(child_main, top, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, arg);
        let errno = nix::Error::last();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 { Err(SpawnError::Fork(errno)) } else { Ok(Pid::from_raw(pid)) }
    }
}

/// EOF means the exec happened (the pipe is close-on-exec); 8 bytes are a failed step + errno.
fn read_exec_status(fd: OwnedFd) -> Result<(), SpawnError> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(&fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(SpawnError::Pipe(e.into())),
        }
    }
    if got < buf.len() {
        return Ok(());
    }
    let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Err(SpawnError::Child {
        step: STEPS.get(step).copied().unwrap_or("setup"),
        errno: nix::Error::from_raw(errno),
    })
}

/// Raw pointers and descriptors the child uses; nothing in it allocates.
struct ChildSetup<'a> {
    prepared: &'a Prepared,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    cgroup_join: &'a [CString],
    stdout: Option<i32>,
    stderr: Option<i32>,
    credentials: Option<(u32, u32, &'a [u32])>,
    status: i32,
    fd_sweep: FdSweep,
    /// The fallback sweep covers descriptors 3..fd_bound (`fd_sweep_bound`).
    fd_bound: i32,
    /// RLIMIT_NOFILE set before exec: the service's, not the supervisor's raised one.
    nofile: Option<libc::rlimit>,
}

impl ChildSetup<'_> {
    /// Runs in the forked child. Only async-signal-safe calls.
    ///
    /// # Safety
    /// Only in the child of `clone_vfork`, with `self` alive in the suspended parent.
    unsafe fn exec(&self) -> ! {
        // SAFETY: plain system calls on the C strings, pointer arrays and descriptors the
        // parent prepared and keeps alive until we exec or exit; nothing allocates or locks.
        unsafe {
            let fail = |step: usize| -> ! {
                let errno = *libc::__errno_location();
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
                msg[4..].copy_from_slice(&errno.to_ne_bytes());
                libc::write(self.status, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
            if libc::setsid() < 0 {
                fail(0);
            }
            for file in self.cgroup_join {
                if !join_cgroup(file) {
                    fail(1);
                }
            }
            if !self.redirect_stdio() {
                fail(2);
            }
            if !reset_signals() {
                fail(3);
            }
            if let Some((uid, gid, groups)) = self.credentials {
                // The system calls themselves, as glibc's posix_spawn makes them: the libc
                // wrappers take a lock and signal every thread on the process's thread list,
                // and in this child, which shares the parent's memory, that list is the
                // parent's.
                if libc::syscall(id_calls::SETGROUPS, groups.len(), groups.as_ptr()) != 0 {
                    fail(4);
                }
                let (gid, uid) = (libc::c_long::from(gid), libc::c_long::from(uid));
                if libc::syscall(id_calls::SETGID, gid) != 0 || libc::syscall(id_calls::SETUID, uid) != 0 {
                    fail(5);
                }
            }
            if let Some(cwd) = &self.prepared.cwd {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    fail(6);
                }
            }
            if let Some(limit) = &self.nofile
                && libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0
            {
                fail(7);
            }
            libc::execve(self.prepared.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            fail(8)
        }
    }

    /// stdin from /dev/null, stdout/stderr to the pipes (or /dev/null), every other descriptor
    /// except the status pipe closed at exec.
    ///
    /// # Safety
    /// Only in the child, as `exec`.
    unsafe fn redirect_stdio(&self) -> bool {
        // SAFETY: open/dup2 with a C string of `Prepared` and descriptors we hold.
        unsafe {
            let null = libc::open(self.prepared.dev_null.as_ptr(), libc::O_RDWR);
            if null < 0 {
                return false;
            }
            let out = self.stdout.unwrap_or(null);
            let err = self.stderr.unwrap_or(null);
            if libc::dup2(null, 0) < 0 || libc::dup2(out, 1) < 0 || libc::dup2(err, 2) < 0 {
                return false;
            }
            self.close_fds_at_exec()
        }
    }

    /// Marks every descriptor from 3 up close-on-exec. Marked, not closed: the status pipe
    /// (close-on-exec since its creation) must stay open until exec, whose closing of it tells
    /// the parent the exec succeeded.
    ///
    /// # Safety
    /// Only in the child, as `exec`: it changes the flags of descriptors it does not own.
    unsafe fn close_fds_at_exec(&self) -> bool {
        // SAFETY: close_range and fcntl(F_SETFD) only set a flag in this process's own
        // descriptor table (not shared with the parent: no CLONE_FILES); errno is read right
        // after the call that set it.
        unsafe {
            if self.fd_sweep == FdSweep::CloseRange
                && libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0
            {
                return true;
            }
            // No close_range with CLOSE_RANGE_CLOEXEC (Linux 5.11): ENOSYS before 5.9, EINVAL for
            // the flag on 5.9 and 5.10, EPERM where an older seccomp profile (Docker's) lacks
            // it. Any failure of it lands here, as the loop does the same job on every kernel.
            for fd in 3..self.fd_bound {
                if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0
                    && *libc::__errno_location() != libc::EBADF
                {
                    return false;
                }
            }
            true
        }
    }
}

/// The credential system calls that take 32-bit ids: the plain ones on x86_64, aarch64 and
/// the other 64-bit architectures; on 32-bit x86 and arm those are the old 16-bit calls, and
/// the 32-bit ones carry a `32` suffix.
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
mod id_calls {
    use nix::libc;
    pub(super) const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub(super) const SETGID: libc::c_long = libc::SYS_setgid;
    pub(super) const SETUID: libc::c_long = libc::SYS_setuid;
}
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
mod id_calls {
    use nix::libc;
    pub(super) const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub(super) const SETGID: libc::c_long = libc::SYS_setgid32;
    pub(super) const SETUID: libc::c_long = libc::SYS_setuid32;
}

/// Writes "0" (this process) into a `cgroup.procs` file.
///
/// # Safety
/// Only in the child, as `exec`.
unsafe fn join_cgroup(file: &CString) -> bool {
    // SAFETY: open/write/close on a C string and a descriptor of our own.
    unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
        libc::close(fd);
        ok
    }
}

/// An empty signal mask and default dispositions: exec keeps ignored signals ignored (Rust
/// ignores SIGPIPE), and services expect the defaults.
///
/// # Safety
/// Only in the child: it resets the dispositions of the process it runs in.
unsafe fn reset_signals() -> bool {
    // SAFETY: signal/sigprocmask with constants and a local set.
    unsafe {
        // Defaults first, then unblock: a signal arriving in between must not run one of the
        // supervisor's handlers in the child.
        // 1..32: the classic signals, the ones a Rust program (std, tokio) ever changes
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::fd::{AsFd, FromRawFd};
    use std::time::{Duration, Instant};

    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::wait::{WaitStatus, waitpid};

    use super::*;
    use crate::runtime::credentials;

    /// Runs `argv` with stdout to a pipe and returns what it printed, once it has exited 0 (the
    /// test process is its parent and reaps it). A child whose setup fails is left a zombie:
    /// its pid is not returned, and reaping any child would take other tests' children.
    fn output_of(
        argv: &[&str],
        credentials: Option<&Credentials>,
        cwd: Option<&Path>,
        fd_sweep: FdSweep,
    ) -> Result<String, SpawnError> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let env = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        // close-on-exec, so that no child of another test keeps the write end (and us) waiting
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let cmd = Command {
            argv: &argv,
            name: &argv[0],
            env: &env,
            cwd,
            credentials,
            cgroup_join: &[],
            stdout: Some(out_w),
            stderr: None,
        };
        let pid = spawn_with(cmd, fd_sweep)?;
        let out = read_to_eof(&out_r, Duration::from_secs(10));
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0), "{argv:?} printed {out:?}");
        Ok(out)
    }

    fn read_to_eof(fd: &OwnedFd, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            let left = PollTimeout::try_from(deadline.saturating_duration_since(Instant::now())).unwrap();
            let ready = poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], left).unwrap();
            assert!(ready > 0, "no EOF within {within:?}, got {:?}", String::from_utf8_lossy(&out));
            match nix::unistd::read(fd, &mut buf).unwrap() {
                0 => return String::from_utf8(out).unwrap(),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Descriptors that are not close-on-exec, which no child may inherit all the same: both
    /// ends of a pipe, and a copy `below_top` under the top of the range the fallback sweeps
    /// (one slot per test, as they run at once).
    fn inheritable_fds(below_top: i32) -> Vec<OwnedFd> {
        let (r, w) = nix::unistd::pipe().unwrap();
        let top = fcntl(&r, FcntlArg::F_DUPFD(fd_sweep_bound() - below_top)).unwrap();
        // SAFETY: F_DUPFD has just made `top`, and nothing else owns it.
        let fds = vec![r, w, unsafe { OwnedFd::from_raw_fd(top) }];
        for fd in &fds {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
            assert_eq!(fcntl(fd, FcntlArg::F_GETFD).unwrap() & libc::FD_CLOEXEC, 0);
        }
        fds
    }

    /// The descriptors of an exec'd child, as `ls /proc/self/fd` lists them.
    fn fds_of_a_child(fd_sweep: FdSweep) -> BTreeSet<i32> {
        let out = output_of(&["ls", "/proc/self/fd"], None, None, fd_sweep).unwrap();
        out.split_whitespace().map(|fd| fd.parse().unwrap()).collect()
    }

    #[test]
    fn spawns_leak_no_descriptors() {
        let parents = inheritable_fds(2);
        // 0-2 are the child's stdio, 3 is the directory ls is reading
        assert_eq!(fds_of_a_child(FdSweep::CloseRange), BTreeSet::from([0, 1, 2, 3]), "ours: {parents:?}");
    }

    /// Issue: on kernels before 5.11 (Debian 11, Ubuntu 20.04, RHEL 8) close_range with
    /// CLOSE_RANGE_CLOEXEC fails, and every native spawn with it.
    #[test]
    fn spawns_work_without_close_range() {
        let parents = inheritable_fds(1);
        assert_eq!(fds_of_a_child(FdSweep::Loop), BTreeSet::from([0, 1, 2, 3]), "ours: {parents:?}");
    }

    #[test]
    fn spawns_take_the_users_ids_and_groups_only() {
        let nobody = credentials::resolve("nobody").unwrap();
        let out = output_of(&["sh", "-c", "id -u; id -g; id -G"], Some(&nobody), None, FdSweep::CloseRange)
            .unwrap();
        let ids: Vec<BTreeSet<u32>> =
            out.lines().map(|l| l.split_whitespace().map(|id| id.parse().unwrap()).collect()).collect();
        let groups: BTreeSet<u32> = nobody.groups.iter().copied().chain([nobody.gid]).collect();
        assert_eq!(ids, [BTreeSet::from([nobody.uid]), BTreeSet::from([nobody.gid]), groups], "{out}");
        assert!(!ids[2].contains(&0), "root's group is left: {out}");
        // the parent's threads, whose thread list the child saw, are still root (a test's
        // thread that has ended since the listing has no status to read)
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else { continue };
            let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert!(uids.split_whitespace().skip(1).all(|u| u == "0"), "{uids}");
        }
    }

    #[test]
    fn a_step_after_the_credentials_reports_its_failure() {
        use std::os::unix::fs::PermissionsExt;
        let nobody = credentials::resolve("nobody").unwrap();
        let roots_only = tempfile::tempdir().unwrap();
        std::fs::set_permissions(roots_only.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err =
            output_of(&["true"], Some(&nobody), Some(roots_only.path()), FdSweep::CloseRange).unwrap_err();
        assert!(matches!(err, SpawnError::Child { step: "chdir", errno: nix::Error::EACCES }), "{err}");
    }

    #[test]
    fn programs_resolve_like_execvp() {
        assert_eq!(
            resolve_program("sh", Some("/nonexistent:/bin:/usr/bin"), None).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(resolve_program("./run", None, Some(Path::new("/srv"))).unwrap(), Path::new("/srv/./run"));
        assert_eq!(resolve_program("/bin/true", Some(""), None).unwrap(), Path::new("/bin/true"));
        assert!(matches!(
            resolve_program("no-such-program-xyz", None, None),
            Err(SpawnError::NotFound { .. })
        ));
    }
}
