//! docs/operations.md is run, not just read: every `sh` block executes in order, under bash
//! with `set -euo pipefail`, in a sandbox where `/opt/titan` is the directory of a running
//! `titan-supervisor demo` (the same layout) and `/etc/titan` holds the test signing key of
//! `releases/`. `sh host-only` blocks need a real host and are only counted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::wait_for;
use common::{fixtures, wait_or_kill};

const DOC: &str = "docs/operations.md";

/// One fenced block of the guide.
#[derive(Debug)]
struct Block {
    /// The line the block starts on (for messages).
    line: usize,
    info: String,
    text: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block { line: i + 1, info: info.trim().to_owned(), text: String::new() })
            }
            (Some(_), Some("")) => out.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{DOC}: a code block is not closed");
    out
}

/// The demo's daemon, stopped (Ctrl-C, as an operator would) when dropped.
struct Demo {
    child: Child,
    dir: PathBuf,
}

impl Demo {
    fn start(dir: &Path, out: &Path) -> Demo {
        let log = std::fs::File::create(out).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_titan-supervisor"))
            .args(["demo", "--dir", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("titan-supervisor demo");
        let demo = Demo { child, dir: dir.to_owned() };
        let over = wait_for(Duration::from_secs(60), || {
            let text = std::fs::read_to_string(out).unwrap_or_default();
            (text.contains("The deploy tour is over") || text.contains("The deploy tour failed"))
                .then_some(text)
        });
        let text = over.unwrap_or_else(|| std::fs::read_to_string(out).unwrap_or_default());
        assert!(text.contains("The deploy tour is over"), "the demo did not get through its tour:\n{text}");
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        if wait_for(Duration::from_secs(20), || self.child.try_wait().ok().flatten()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the guide's `/opt/titan/compose` holds on a host before its commands run: the repo's
/// stack files (paths moved into the sandbox), CI's digests, an ecosystem file.
fn prepare(demo: &Path, etc: &Path, checkout: &Path) {
    let compose = demo.join("compose");
    std::fs::create_dir_all(&compose).unwrap();
    let moved = |text: String| {
        text.replace("/run/titan/supervisor.sock", &demo.join("supervisor.sock").display().to_string())
            .replace("/opt/titan", &demo.display().to_string())
    };
    let services = std::fs::read_to_string(root().join("services.toml")).unwrap();
    std::fs::write(compose.join("services.toml"), moved(services)).unwrap();
    std::fs::copy(root().join("docker-compose.prod.yml"), compose.join("docker-compose.prod.yml")).unwrap();
    std::fs::copy(root().join("releases/digests.example.json"), compose.join("digests.json")).unwrap();
    std::fs::copy(fixtures().join("pm2/ecosystem.config.js"), compose.join("ecosystem.config.js")).unwrap();
    std::fs::create_dir_all(etc).unwrap();
    std::fs::copy(root().join("releases/test-key.sec"), etc.join("release.key")).unwrap();
    std::fs::copy(root().join("releases/test-key.pub"), etc.join("release.pub")).unwrap();
    // the operator's draft of the secrets, in the working directory the guide starts from
    std::fs::create_dir_all(checkout).unwrap();
    std::fs::copy(fixtures().join("titan.env.sample"), checkout.join(".env.prod")).unwrap();
}

/// One block under bash, its paths moved into the sandbox; exit code and output.
fn run_block(block: &Block, demo: &Demo, etc: &Path, cwd: &Path) -> (Option<i32>, String) {
    let script = block
        .text
        .replace("/opt/titan", &demo.dir.display().to_string())
        .replace("/etc/titan", &etc.display().to_string());
    let bin = Path::new(env!("CARGO_BIN_EXE_titan-supervisor")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out_path = cwd.join(format!(".block-{}.out", block.line));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(cwd)
        .env("PATH", path)
        .env("TITAN_SUPERVISOR_SOCKET", demo.dir.join("supervisor.sock"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("bash");
    let status = wait_or_kill(&mut child, Duration::from_secs(60), &format!("{DOC}:{}", block.line));
    (status.code(), std::fs::read_to_string(&out_path).unwrap_or_default())
}

#[test]
fn every_command_of_the_operations_guide_runs_or_is_marked_host_only() {
    let doc = std::fs::read_to_string(root().join(DOC)).unwrap();
    let all = blocks(&doc);
    let shell: Vec<&Block> = all.iter().filter(|b| b.info.starts_with("sh")).collect();
    for b in &shell {
        assert!(
            matches!(b.info.as_str(), "sh" | "sh host-only"),
            "{DOC}:{}: ```{}: sh or sh host-only",
            b.line,
            b.info
        );
    }
    let runnable: Vec<&&Block> = shell.iter().filter(|b| b.info == "sh").collect();
    assert!(runnable.len() >= 10 && shell.len() > runnable.len(), "{DOC}: {} blocks", shell.len());
    // a command outside any block is not run: the guide keeps them all in blocks
    for (i, line) in doc.lines().enumerate() {
        assert!(
            !line.starts_with("$ ") && !line.starts_with("# titan-supervisor"),
            "{DOC}:{}: {line}",
            i + 1
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let (etc, checkout) = (dir.path().join("etc"), dir.path().join("checkout"));
    let demo = Demo::start(&dir.path().join("opt"), &dir.path().join("demo.out"));
    prepare(&demo.dir, &etc, &checkout);
    for block in runnable {
        let (code, out) = run_block(block, &demo, &etc, &checkout);
        assert_eq!(
            code,
            Some(0),
            "{DOC}:{}: this block failed:\n{}\n-- its output:\n{out}",
            block.line,
            block.text
        );
    }
    // the guide's steps left what they say they leave
    let compose = demo.dir.join("compose");
    let env = std::fs::metadata(compose.join(".env.prod")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(env.permissions().mode() & 0o777, 0o600, ".env.prod is 0600");
    let imported = std::fs::read_to_string(compose.join("services.imported.toml")).unwrap();
    assert!(
        imported.contains("[services.titan-brain]") && !imported.contains("sample-postgres"),
        "{imported}"
    );
}
