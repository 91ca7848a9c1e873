//! Graded access to the control socket, as opsd uses it: a container running as opsd's uid,
//! with the socket's directory mounted, may restart a phase service but not deploy; a
//! container running as any other uid may do nothing. The client in the container is the
//! supervisor's own CLI (the PID 1 test image); the daemon decides by SO_PEERCRED.

mod common;

use std::time::Duration;

use common::daemon::{Daemon, svc};
use common::docker::{self, docker};

const SEC: Duration = Duration::from_secs(1);
const OPSD: &str = "1500";

/// `titan-supervisor ARGS --socket /sock/s.sock` in a container as `uid`, the daemon's
/// directory mounted at /sock: exit code and output.
fn in_container(d: &Daemon, uid: &str, args: &[&str]) -> (Option<i32>, String) {
    let mount = format!("{}:/sock", d.dir.path().display());
    let user = format!("{uid}:{uid}");
    let image = docker::pid1_image();
    let run = ["run", "--rm", "--network", "none", "--user", &user, "-v", &mount];
    let cli = ["--entrypoint", "/usr/local/bin/titan-supervisor", &image];
    let tail = ["--socket", "/sock/s.sock"];
    let out = docker(&[&run[..], &cli, args, &tail].concat());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn opsd_may_restart_a_service_through_the_socket_but_not_deploy_and_others_may_do_nothing() {
    let config = format!("[services.hunter]\n{}\nhealth = {{ log = \"^ready$\" }}\n", svc("hunter", ""));
    let header = format!("socket_mode = \"0666\"\noperate_uids = [{OPSD}]\nread_uids = [1600]\n");
    let d = Daemon::start_with_header(&config, &header);
    let before = d.healthy_pid("hunter", None, 30 * SEC);
    // the container's uid must reach the socket through the directory
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();

    let (code, out) = in_container(&d, OPSD, &["restart", "hunter"]);
    assert_eq!(code, Some(0), "{out}\n{}", d.log_tail());
    assert_ne!(d.healthy_pid("hunter", Some(before), 30 * SEC), before, "restarted");

    let (code, out) = in_container(&d, OPSD, &["switch", "20261202T000000Z-aaaaaaa"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("403") && out.contains("POST /v1/switch needs deploy access; uid 1500 has only operate"),
        "{out}"
    );
    let (code, out) = in_container(&d, OPSD, &["reload"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("needs deploy access"), "{out}");

    // a reader reads and operates nothing; anyone else gets nothing at all
    let (code, out) = in_container(&d, "1600", &["status"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = in_container(&d, "1600", &["stop", "hunter"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("needs operate access; uid 1600 has only read"), "{out}");
    let (code, out) = in_container(&d, "1700", &["status"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("GET /v1/status needs read access; uid 1700 has no access"), "{out}");
    assert_eq!(d.status_of("hunter")["state"], "healthy", "nothing the refused peers asked was done");
}
