//! `titan-supervisor demo [--dir DIR] [--print-config]`: the built-in six-tier demo.

use super::Exit;
use super::graph::render_text;
use crate::cli::DemoArgs;
use crate::demo;
use crate::graph::Graph;

pub fn run(args: &DemoArgs) -> Exit {
    if args.print_config {
        print!("{}", demo::CONFIG);
        return Exit::Ok;
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let cfg = match demo::load(&dir) {
        Ok(cfg) => cfg,
        Err(report) => {
            eprint!("{report}");
            return Exit::Failed;
        }
    };
    match Graph::of(&cfg) {
        Ok(graph) => {
            print!("{}", render_text(&cfg, &graph));
            println!(
                "\n(The supervision engine that runs this graph lands with issue #4; this shows the plan.)"
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("demo: {e}");
            Exit::Failed
        }
    }
}
