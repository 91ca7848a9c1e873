//! `titan-supervisor man` and `titan-supervisor completions SHELL`: the man page and the shell
//! completion scripts, generated from the clap definition in `cli` so they cannot drift from
//! it (tests/generated.rs holds the committed copies in doc/ and completions/ to this output).
//!
//! The man page is one page, titan-supervisor(1), as `rg --generate man` makes one: NAME,
//! SYNOPSIS, DESCRIPTION and the global OPTIONS as clap_mangen renders them, then a COMMANDS
//! section with one subsection per command (its synopsis, description and options, from
//! clap_mangen's renderings of that command), then EXIT STATUS. clap_mangen's own
//! SUBCOMMANDS section is left out: it points at titan-supervisor-<command>(1) pages that a
//! single page does not have.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::Exit;
use crate::cli::{Cli, CompletionsArgs};

/// The program's name, as the page, the completions and the shells know it.
const BIN: &str = "titan-supervisor";

/// Every exit code, in the order the EXIT STATUS section lists them.
const EXIT_CODES: [Exit; 4] = [Exit::Ok, Exit::Failed, Exit::Refused, Exit::Unreachable];

pub(crate) fn man() -> Exit {
    print(man_page())
}

pub(crate) fn completions(args: &CompletionsArgs) -> Exit {
    print(Ok(completion_script(args.shell)))
}

/// Writes a generated document to stdout: exit 0, or 1 when it cannot be made or written.
fn print(doc: io::Result<Vec<u8>>) -> Exit {
    let written = doc.and_then(|bytes| {
        let mut out = io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()
    });
    match written {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failed
        }
    }
}

/// The completion script for `shell`, made in memory: clap_complete panics on a failed write,
/// a Vec never fails one.
pub(crate) fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    match shell {
        clap_complete::Shell::Bash => fix_bash_state_names(&script),
        _ => script,
    }
}

/// clap_complete's bash script (4.6.12) tracks the command being completed in `$cmd` as
/// `titan__supervisor__subcmd__switch` but names its case arms
/// `titan__subcmd__supervisor__subcmd__switch` when the program's name has a dash, so nothing
/// after the first word completes (clap-rs/clap#6421, open). Spelling the arms as the loop
/// does is the upstream fix; once clap_complete has it, the misspelling is gone and this
/// replaces nothing.
fn fix_bash_state_names(script: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    text.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__")).into_bytes()
}

/// The roff source of titan-supervisor(1).
pub(crate) fn man_page() -> io::Result<Vec<u8>> {
    let root = Cli::command().disable_help_subcommand(true).subcommand_value_name("COMMAND");
    let man = Man::new(root.clone()).manual("User Commands");
    let mut page = Page::new();
    page.add(|w| man.render_title(w))?;
    page.add(|w| man.render_name_section(w))?;
    page.add(|w| man.render_synopsis_section(w))?;
    page.add(|w| man.render_description_section(w))?;
    page.add(|w| man.render_options_section(w))?;
    page.roff(Roff::new().control("SH", ["COMMANDS"]));
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        page.command(sub, sub.get_name())?;
    }
    page.roff(&exit_status());
    page.add(|w| man.render_version_section(w))?;
    Ok(page.roff.into_bytes())
}

/// The EXIT STATUS section, from `Exit`.
fn exit_status() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for code in EXIT_CODES {
        roff.control("TP", []).text([bold((code as u8).to_string())]).text([roman(meaning(code))]);
    }
    roff
}

/// What an exit code tells the caller.
fn meaning(code: Exit) -> &'static str {
    match code {
        Exit::Ok => "Done.",
        Exit::Failed => {
            "The operation ran and failed: a service that did not become healthy, a switch that \
             was rolled back."
        }
        Exit::Refused => {
            "Refused, nothing was done: bad input (a usage error, an invalid services.toml, an \
             unknown service), an invalid release, the deploy lock held."
        }
        Exit::Unreachable => "The daemon cannot be reached on its control socket.",
    }
}

/// A man page assembled from clap_mangen's sections and our own roff.
struct Page {
    roff: String,
    /// What every roff rendering starts with (the apostrophe string): kept once, at the top.
    preamble: String,
}

impl Page {
    fn new() -> Self {
        let preamble = Roff::new().render();
        Page { roff: preamble.clone(), preamble }
    }

    /// Appends one of clap_mangen's sections whole.
    fn add(&mut self, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let text = self.rendered(render)?;
        self.roff.push_str(&text);
        Ok(())
    }

    /// Appends one of clap_mangen's sections without its `.SH` heading: its body goes into a
    /// subsection of COMMANDS.
    fn add_body(&mut self, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let text = self.rendered(render)?;
        let body = match text.split_once('\n') {
            Some((first, rest)) if first.starts_with(".SH ") => rest,
            _ => &text,
        };
        self.roff.push_str(body);
        Ok(())
    }

    fn roff(&mut self, roff: &Roff) {
        self.add_text(&roff.render());
    }

    fn add_text(&mut self, text: &str) {
        self.roff.push_str(text.strip_prefix(&self.preamble).unwrap_or(text));
    }

    /// One rendering as text, its preamble dropped.
    fn rendered(&self, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<String> {
        let mut bytes = Vec::new();
        render(&mut bytes)?;
        let text = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(text.strip_prefix(&self.preamble).map(str::to_owned).unwrap_or(text))
    }

    /// The subsection of `cmd` (`path`: its words after the program's name, `release create`),
    /// then those of its own subcommands.
    fn command(&mut self, cmd: &clap::Command, path: &str) -> io::Result<()> {
        // The global options and -h/--help are in OPTIONS once, not under every command.
        let alone = cmd
            .clone()
            .bin_name(format!("{BIN} {path}"))
            .disable_help_flag(true)
            .disable_help_subcommand(true)
            .subcommand_value_name("COMMAND");
        let man = Man::new(alone.clone());
        // roff passes a request's arguments through as they are: the dashes are ours to escape
        self.roff(Roff::new().control("SS", [path.replace('-', r"\-").as_str()]));
        self.add_body(|w| man.render_synopsis_section(w))?;
        self.roff(Roff::new().control("PP", []));
        self.add_body(|w| man.render_description_section(w))?;
        self.add_body(|w| man.render_options_section(w))?;
        for sub in alone.get_subcommands().filter(|s| !s.is_hide_set()) {
            self.command(sub, &format!("{path} {}", sub.get_name()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        String::from_utf8(man_page().expect("man page")).expect("utf-8")
    }

    #[test]
    fn one_subsection_per_command_nested_ones_included() {
        let page = page();
        for sub in Cli::command().get_subcommands() {
            let heading = format!(".SS {}\n", sub.get_name().replace('-', r"\-"));
            assert!(page.contains(&heading), "no {heading:?} in the man page");
        }
        assert!(page.contains(".SS \"release create\"\n"), "no subsection for release create");
        assert!(!page.contains("titan\\-supervisor\\-switch(1)"), "points at a page that does not exist");
    }

    #[test]
    fn exit_status_lists_every_code_once() {
        let page = page();
        let section = page.split(".SH \"EXIT STATUS\"\n").nth(1).expect("EXIT STATUS section");
        for code in EXIT_CODES {
            assert_eq!(section.matches(&format!(".TP\n\\fB{}\\fR\n", code as u8)).count(), 1, "{code:?}");
        }
    }

    #[test]
    fn the_preamble_appears_once_and_commands_carry_no_global_options() {
        let page = page();
        assert_eq!(page.matches(".ds Aq").count(), 2, "the apostrophe preamble (.ie/.el) once");
        assert_eq!(page.matches("\\-\\-socket").count(), 2, "--socket in SYNOPSIS and OPTIONS only");
    }
}
