//! Exec checks: a command inside a service's container (Docker's exec API, by container name) or
//! as a process on the host, started by the project's spawner with a shell in between that
//! reaps it and hands its exit status over (see `WRAPPER`).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::runtime::exit::Exit;
use crate::runtime::spawn::{self, SpawnError};

/// Why a host command could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot start: {0}")]
    Spawn(#[from] SpawnError),
    #[error("cannot start: no pipe for its exit status: {0}")]
    Pipe(#[source] io::Error),
}

/// The shell between us and a host command. The daemon's actor reaps every child of this
/// process with `waitpid(-1)` (`runtime::reaper`), so the exit of a child started here would
/// be taken by it (and `tokio::process` would race it the same way). The shell is the
/// command's parent and reaper instead, and prints its status on our pipe; the shell itself
/// ends as one more orphan for the actor (in a process without a reaper, the tests, it stays
/// a zombie until the process ends). The command's own output is discarded.
const WRAPPER: &str = r#""$@" </dev/null >/dev/null 2>&1; echo $?"#;

/// A host command on its way: the shell's pid (leader of its own process group, the
/// command's too) and the pipe its status comes on.
struct Started {
    shell: Pid,
    status: pipe::Receiver,
}

/// Runs `argv` on the host, in the supervisor's environment; passed on exit 0 within
/// `timeout`, else the process group is killed. The detail: "exit 0", "exit 3", "killed by
/// SIGTERM", "timed out after 200ms", "cannot start: ...".
pub(crate) async fn on_host(argv: &[String], timeout: Duration) -> (bool, String) {
    // spawn passes on nothing by itself; a variable that is not UTF-8 is left out
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    run(&Host { argv, env: &env, cwd: None, credentials: None }, timeout).await
}

/// A command to run on the host: a check's (the supervisor's environment) or a native
/// migration's (its service's environment, directory and user).
pub(crate) struct Host<'a> {
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) cwd: Option<&'a std::path::Path>,
    pub(crate) credentials: Option<&'a crate::runtime::credentials::Credentials>,
}

/// Runs `cmd`; passed on exit 0 within `timeout`, else its process group is killed.
pub(crate) async fn run(cmd: &Host<'_>, timeout: Duration) -> (bool, String) {
    let started = match start(cmd) {
        Ok(started) => started,
        Err(e) => return (false, e.to_string()),
    };
    match tokio::time::timeout(timeout, exit_status(started.status)).await {
        Ok(Some(exit)) => (exit.success(), exit_text(exit)),
        Ok(None) => (false, "ended without reporting its exit status".to_owned()),
        Err(_) => {
            // the pipe is still open, so the shell has not exited: the pid is still its own
            let _ = kill(Pid::from_raw(-started.shell.as_raw()), Signal::SIGKILL);
            (false, timed_out(timeout))
        }
    }
}

/// Starts the shell running `argv`, the program found in PATH first (so that a missing one
/// is named, not a shell's 127).
fn start(host: &Host<'_>) -> Result<Started, StartError> {
    let (argv, env) = (host.argv, host.env);
    let program = argv.first().map_or("", String::as_str);
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
    let resolved = spawn::resolve_program(program, path, host.cwd)?;
    let mut shell = vec!["/bin/sh".to_owned(), "-c".to_owned(), WRAPPER.to_owned(), "verify-exec".to_owned()];
    shell.push(resolved.to_string_lossy().into_owned());
    shell.extend(argv.iter().skip(1).cloned());
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::Pipe(e.into()))?;
    let status = pipe::Receiver::from_owned_fd(read).map_err(StartError::Pipe)?;
    let cmd = spawn::Command {
        argv: &shell,
        name: program,
        env,
        cwd: host.cwd,
        credentials: host.credentials,
        cgroup_join: &[],
        stdout: Some(write),
        stderr: None,
    };
    Ok(Started { shell: spawn::spawn(cmd)?, status })
}

/// The status the shell printed, once it closes the pipe; `None` if it printed none (killed).
async fn exit_status(mut status: pipe::Receiver) -> Option<Exit> {
    let mut text = String::new();
    (&mut status).take(16).read_to_string(&mut text).await.ok()?;
    let code: i64 = text.trim().parse().ok()?;
    // a shell's status has Docker's convention: above 128, the signal that ended the command
    Some(Exit::of_docker(code))
}

/// Runs `argv` in `container`; passed on exit 0 within `timeout`. On a timeout the command is
/// left running inside the container: Docker's API has no way to kill an exec.
pub(crate) async fn in_container(
    docker: &Docker,
    container: &str,
    argv: &[String],
    timeout: Duration,
) -> (bool, String) {
    match tokio::time::timeout(timeout, docker_exec(docker, container, argv)).await {
        Ok(Ok(Some(code))) => (code == 0, format!("exit {code}")),
        Ok(Ok(None)) => (false, "ended without an exit code".to_owned()),
        Ok(Err(e)) => (false, format!("docker exec in {container}: {e}")),
        Err(_) => (false, timed_out(timeout)),
    }
}

/// Create, start and drain an exec, then read its exit code (as `runtime::docker::exec`).
async fn docker_exec(
    docker: &Docker,
    container: &str,
    argv: &[String],
) -> Result<Option<i64>, bollard::errors::Error> {
    let options = CreateExecOptions {
        cmd: Some(argv.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(container, options).await?;
    let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, Some(start)).await? {
        // the output ends when the command does
        while output.next().await.is_some() {}
    }
    Ok(docker.inspect_exec(&exec.id).await?.exit_code)
}

/// "exit 3", or how a signal ended it ("killed by SIGKILL").
fn exit_text(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit {code}"),
        signal => signal.to_string(),
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {timeout:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn a_host_command_exiting_0_passes() {
        assert_eq!(on_host(&argv(&["true"]), TIMEOUT).await, (true, "exit 0".into()));
    }

    #[tokio::test]
    async fn a_host_command_exiting_3_fails_with_its_code() {
        assert_eq!(on_host(&argv(&["sh", "-c", "exit 3"]), TIMEOUT).await, (false, "exit 3".into()));
    }

    #[tokio::test]
    async fn a_host_command_ended_by_a_signal_says_which() {
        let result = on_host(&argv(&["sh", "-c", "kill -TERM $$"]), TIMEOUT).await;
        assert_eq!(result, (false, "killed by SIGTERM".into()));
    }

    #[tokio::test]
    async fn arguments_reach_the_command_unchanged() {
        let script = r#"[ "$1" = "a b" ] && [ "$2" = '$HOME' ] && [ $# = 2 ]"#;
        let result = on_host(&argv(&["sh", "-c", script, "sh", "a b", "$HOME"]), TIMEOUT).await;
        assert_eq!(result, (true, "exit 0".into()));
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_start() {
        let result = on_host(&argv(&["titan-no-such-program"]), TIMEOUT).await;
        assert_eq!(
            result,
            (false, "cannot start: program \"titan-no-such-program\" not found in PATH".into())
        );
    }

    #[tokio::test]
    async fn a_host_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 5", pid_file.display());
        let begun = std::time::Instant::now();
        let result = on_host(&argv(&["sh", "-c", &script]), Duration::from_millis(200)).await;
        assert_eq!(result, (false, "timed out after 200ms".into()));
        assert!(begun.elapsed() < Duration::from_secs(2), "{:?}", begun.elapsed());
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // killed with its shell, then reaped by whoever inherits it: gone long before 5 s
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while crate::runtime::procfs::stat(pid)
            .is_some_and(|s| crate::runtime::procfs::stat_field(&s, 3) != Some("Z"))
        {
            assert!(std::time::Instant::now() < deadline, "sleep {pid} still running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
