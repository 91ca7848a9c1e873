//! The committed man page and shell completions against what the real binary prints: byte for
//! byte, so a CLI change that was not followed by scripts/generate-docs.sh fails here; plus
//! checks that the page covers every command and that the shells accept the scripts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::CommandFactory;
use common::{run, wait_or_kill};
use titan_supervisor::cli::Cli;

const MAN: &str = "doc/titan-supervisor.1";
const BASH: &str = "completions/titan-supervisor.bash";
const ZSH: &str = "completions/_titan-supervisor";
const FISH: &str = "completions/titan-supervisor.fish";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `titan-supervisor ARGS` prints exactly the committed `file`.
fn assert_current(file: &str, args: &[&str]) {
    let out = run(args);
    assert_eq!(out.code, Some(0), "titan-supervisor {args:?} failed: {}", out.stderr);
    assert_eq!(out.stderr, "", "titan-supervisor {args:?} wrote to stderr");
    let committed = std::fs::read(repo(file))
        .unwrap_or_else(|e| panic!("{file}: {e}; run scripts/generate-docs.sh to make it"));
    if out.stdout.as_bytes() == committed.as_slice() {
        return;
    }
    let committed = String::from_utf8_lossy(&committed);
    let (line, (was, now)) = committed
        .lines()
        .chain(std::iter::repeat(""))
        .zip(out.stdout.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (was, now))| was != now)
        .map(|(i, pair)| (i + 1, pair))
        .unwrap_or((0, ("", ""))); // only the final newline differs
    panic!(
        "{file} is stale (`titan-supervisor {}` prints something else, first at line {line}:\n  \
         committed: {was:?}\n  now:       {now:?}); run scripts/generate-docs.sh",
        args.join(" ")
    );
}

#[test]
fn the_committed_man_page_is_what_man_prints() {
    assert_current(MAN, &["man"]);
}

#[test]
fn the_committed_completions_are_what_completions_prints() {
    assert_current(BASH, &["completions", "bash"]);
    assert_current(ZSH, &["completions", "zsh"]);
    assert_current(FISH, &["completions", "fish"]);
}

#[test]
fn the_uncommitted_shells_get_a_script_too() {
    for shell in ["elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("titan-supervisor"), "{shell}: {}", out.stdout);
    }
}

#[test]
fn an_unknown_shell_is_refused_with_exit_2() {
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("possible values"), "{}", out.stderr);
}

/// Every command and nested command (`release create`), as the words after the program name.
fn command_paths(cmd: &clap::Command, prefix: &str, paths: &mut Vec<String>) {
    for sub in cmd.get_subcommands() {
        let path = format!("{prefix}{}", sub.get_name());
        paths.push(path.clone());
        command_paths(sub, &format!("{path} "), paths);
    }
}

#[test]
fn the_man_page_has_a_subsection_for_every_command() {
    let page = std::fs::read_to_string(repo(MAN)).expect("read the man page");
    let mut paths = Vec::new();
    command_paths(&Cli::command(), "", &mut paths);
    assert!(paths.iter().any(|p| p == "release create"), "nested commands listed: {paths:?}");
    for path in paths {
        // roff: dashes escaped, an argument with spaces quoted
        let escaped = path.replace('-', r"\-");
        let arg = if path.contains(' ') { format!("\"{escaped}\"") } else { escaped };
        assert!(page.contains(&format!("\n.SS {arg}\n")), "{MAN} has no subsection for `{path}`");
    }
    for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "\"EXIT STATUS\""] {
        assert!(page.contains(&format!("\n.SH {heading}\n")), "{MAN} has no {heading} section");
    }
}

/// Runs `program args` (30 s at most): None when `program` is not installed.
fn shell(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let spawned = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("spawn {program}: {e}"),
    };
    let status = wait_or_kill(&mut child, Duration::from_secs(30), &format!("{program} {args:?}"));
    let out = child.wait_with_output().expect("output");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((status.success(), printed))
}

#[test]
fn the_shells_accept_the_completion_scripts() {
    let (ok, out) = shell("bash", &["-n", BASH]).expect("bash is installed");
    assert!(ok, "bash -n {BASH}: {out}");
    for (program, args) in [("zsh", ["-n", ZSH]), ("fish", ["--no-execute", FISH])] {
        match shell(program, &args) {
            Some((ok, out)) => assert!(ok, "{program} {args:?}: {out}"),
            None => eprintln!("{program} is not installed: its syntax check is skipped"),
        }
    }
}

/// What the bash completion offers for `words`, the last one being completed, through the
/// function the script registers for titan-supervisor (`complete -F <function>`).
fn bash_completes(words: &[&str]) -> String {
    let script = format!(
        r#"source {BASH}
spec=($(complete -p titan-supervisor))
for i in "${{!spec[@]}}"; do [ "${{spec[i]}}" = -F ] && fn=${{spec[i+1]}}; done
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
"$fn" titan-supervisor "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
echo "${{COMPREPLY[@]}}""#,
        words = words.join(" ")
    );
    let (ok, out) = shell("bash", &["-c", &script]).expect("bash is installed");
    assert!(ok, "completing {words:?}: {out}");
    out
}

#[test]
fn the_bash_completion_completes_commands_nested_commands_and_values() {
    let offered = bash_completes(&["titan-supervisor", "swi"]);
    assert_eq!(offered.split_whitespace().collect::<Vec<_>>(), ["switch"], "{offered}");
    let offered = bash_completes(&["titan-supervisor", "release", "cr"]);
    assert_eq!(offered.split_whitespace().collect::<Vec<_>>(), ["create"], "{offered}");
    let offered = bash_completes(&["titan-supervisor", "completions", "z"]);
    assert_eq!(offered.split_whitespace().collect::<Vec<_>>(), ["zsh"], "{offered}");
}

/// clap-rs/clap#6421: with a dash in the program's name, clap_complete's bash script completed
/// nothing after the first word (src/commands/generate.rs spells its states consistently).
#[test]
fn clap_6421_bash_completes_a_commands_options_and_their_values() {
    let offered = bash_completes(&["titan-supervisor", "switch", "--"]);
    let offered: Vec<&str> = offered.split_whitespace().collect();
    assert!(offered.contains(&"--json") && offered.contains(&"--no-disarm"), "{offered:?}");
    let offered = bash_completes(&["titan-supervisor", "graph", "--format", "d"]);
    assert_eq!(offered.split_whitespace().collect::<Vec<_>>(), ["dot"], "{offered}");
    let offered = bash_completes(&["titan-supervisor", "import-compose", "--pro"]);
    assert_eq!(offered.split_whitespace().collect::<Vec<_>>(), ["--project"], "{offered}");
}
