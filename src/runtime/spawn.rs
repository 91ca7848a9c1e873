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
    let program = resolve_program(first, path_var, cmd.cwd)?;
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
const STEPS: [&str; 8] = [
    "setsid",
    "join cgroup",
    "redirect stdio",
    "reset signals",
    "setgroups",
    "setgid/setuid",
    "chdir",
    "exec",
];

/// Starts `cmd` in a new process. Returns once the child has exec'd (or reports why it could
/// not; its exit is then reaped like any other and can be ignored).
pub(crate) fn spawn(cmd: Command<'_>) -> Result<Pid, SpawnError> {
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
}

impl ChildSetup<'_> {
    /// Runs in the forked child. Only async-signal-safe calls.
    unsafe fn exec(&self) -> ! {
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
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    fail(4);
                }
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    fail(5);
                }
            }
            if let Some(cwd) = &self.prepared.cwd {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    fail(6);
                }
            }
            libc::execve(self.prepared.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            fail(7)
        }
    }

    /// stdin from /dev/null, stdout/stderr to the pipes (or /dev/null), every other descriptor
    /// except the status pipe closed at exec.
    unsafe fn redirect_stdio(&self) -> bool {
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
            // close_range(3, ~0, CLOSE_RANGE_CLOEXEC): everything else closes at exec, including
            // the status pipe, whose closing tells the parent the exec succeeded.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0
        }
    }
}

/// Writes "0" (this process) into a `cgroup.procs` file.
unsafe fn join_cgroup(file: &CString) -> bool {
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
unsafe fn reset_signals() -> bool {
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
    use super::*;

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
