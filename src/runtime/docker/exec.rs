//! `exec` health checks of containers: the command runs inside the container through the
//! exec API; it passes when it exits 0 within the probe's timeout.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::DockerError;

/// Runs `argv` in container `id`; `Ok(true)` when it exited 0 within `timeout`.
pub(crate) async fn probe(
    docker: &Docker,
    id: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<bool, DockerError> {
    let run = async {
        let options = CreateExecOptions {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec =
            docker.create_exec(id, options).await.map_err(DockerError::api("create an exec in", id))?;
        let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&exec.id, Some(start))
            .await
            .map_err(DockerError::api("start exec", &exec.id))?
        {
            // the output ends when the command does
            while output.next().await.is_some() {}
        }
        let done = docker.inspect_exec(&exec.id).await.map_err(DockerError::api("inspect exec", &exec.id))?;
        Ok(done.exit_code == Some(0))
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(Ok(false))
}
