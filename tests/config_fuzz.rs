//! Property tests: random and mutated TOML never panics the parser and validator (it is always
//! a model or a report), and the graph's layering holds on random dependency graphs.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use titan_supervisor::config::{self, Source};
use titan_supervisor::graph::{Graph, find_cycles};

const SEEDS: [&str; 2] = [titan_supervisor::demo::CONFIG, include_str!("fixtures/spec-example-release.toml")];

const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\n",
    "#",
    "\\",
    "\"\"\"",
    "$",
    "${",
    "}",
    "$$",
    "${X:-",
    "1",
    "-1",
    "1e999",
    "0",
    "18446744073709551616",
    "true",
    "\"1s\"",
    "\"0s\"",
    "\"10MiB\"",
    "\"x\"",
    "\"\"",
    "[services.x]",
    "[services.x.health]",
    "[groups]",
    "[defaults]",
    "depends_on = [\"x\"]",
    "group = \"shared\"",
    "kind = \"oneshot\"",
    "restart = \"always\"",
    "health = \"none\"",
    "health = { notify = true }",
    "image = \"a@sha256:\"",
    "command = []",
    "memory = \"1B\"",
    "ports = [\"1:1\", \"1:1\"]",
    "é",
    "\u{0}",
    "\u{feff}",
    "🚀",
];

fn parse(text: &str) {
    let source = Source { name: "fuzz.toml", text, base_dir: Path::new("/tmp") };
    let env = |name: &str| (name.len() % 2 == 0).then(|| "v".to_string());
    match config::parse(&source, &env) {
        Ok(cfg) => {
            // a valid model always has an acyclic graph
            cfg.graph().expect("validated config has a graph");
        }
        Err(report) => assert!(!report.items.is_empty(), "an invalid file names its problems"),
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<&str> = text.lines().collect();
    match *m {
        Mutation::Delete(at, n) => {
            let at = at % (chars.len() + 1);
            chars.drain(at..(at + n).min(chars.len()));
            chars.into_iter().collect()
        }
        Mutation::Insert(at, t) => {
            let at = at % (chars.len() + 1);
            chars.splice(at..at, TOKENS[t].chars());
            chars.into_iter().collect()
        }
        Mutation::DuplicateLine(i) => {
            let i = i % lines.len().max(1);
            if let Some(line) = lines.get(i).copied() {
                lines.insert(i, line);
            }
            lines.join("\n")
        }
        Mutation::SwapLines(a, b) => {
            let n = lines.len().max(1);
            if !lines.is_empty() {
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configs_never_panic(seed in 0..SEEDS.len(), muts in prop::collection::vec(mutation(), 1..8)) {
        let text = muts.iter().fold(SEEDS[seed].to_owned(), |t, m| apply(&t, m));
        parse(&text);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        parse(&text);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(0..TOKENS.len(), 0..60)) {
        let text: String = tokens.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" ");
        parse(&text);
    }

    #[test]
    fn layers_respect_every_dependency(edges in prop::collection::vec((1..40usize, any::<usize>()), 0..120)) {
        // edges only point to lower indices: acyclic by construction
        let mut nodes: BTreeMap<String, Vec<String>> = (0..40).map(|i| (format!("s{i:02}"), Vec::new())).collect();
        for (from, to) in edges {
            let to = to % from;
            let deps = nodes.get_mut(&format!("s{from:02}")).unwrap();
            let dep = format!("s{to:02}");
            if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        let graph = Graph::new(&nodes).unwrap();
        let layers = graph.layers();
        let layer_of = |n: &str| layers.iter().position(|l| l.contains(&n)).unwrap();
        for (name, deps) in &nodes {
            let own = layer_of(name);
            for d in deps {
                prop_assert!(layer_of(d) < own, "{d} must start before {name}");
            }
            // as early as possible: right after the deepest dependency
            let earliest = deps.iter().map(|d| layer_of(d) + 1).max().unwrap_or(0);
            prop_assert_eq!(own, earliest);
        }
        let mut stop = graph.stop_order();
        stop.reverse();
        prop_assert_eq!(stop, graph.start_order());
    }

    #[test]
    fn a_back_edge_is_always_reported_as_a_closed_cycle(len in 2..12usize) {
        let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..len {
            nodes.insert(format!("n{i:02}"), vec![format!("n{:02}", (i + 1) % len)]);
        }
        let cycles = find_cycles(&nodes);
        prop_assert_eq!(cycles.len(), 1);
        prop_assert_eq!(cycles[0].len(), len + 1);
        prop_assert_eq!(cycles[0].first(), cycles[0].last());
    }
}
