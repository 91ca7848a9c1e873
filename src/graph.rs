//! The dependency graph of services: start layers (each service in the layer right after its
//! deepest dependency — no barrier beyond what dependencies say), reverse stop order, transitive
//! dependents, and cycle detection that names the whole cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An acyclic dependency graph over service names. Indices are positions in `names()`.
#[derive(Clone, Debug)]
pub struct Graph {
    names: Vec<String>,
    index: HashMap<String, usize>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    /// `layer[i]`: 0 for a service without dependencies, else 1 + the deepest dependency's.
    layer: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("service {service:?} depends on unknown service {dependency:?}")]
    Unknown { service: String, dependency: String },
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

impl Graph {
    /// Builds the graph from `name → dependencies`; fails on an unknown name or a cycle.
    pub fn new(nodes: &BTreeMap<String, Vec<String>>) -> Result<Self, GraphError> {
        let names: Vec<String> = nodes.keys().cloned().collect();
        let index: HashMap<String, usize> = names.iter().cloned().zip(0..).collect();
        let mut deps = vec![Vec::new(); names.len()];
        let mut dependents = vec![Vec::new(); names.len()];
        for (i, (name, ds)) in nodes.iter().enumerate() {
            for dep in ds {
                let &j = index
                    .get(dep)
                    .ok_or_else(|| GraphError::Unknown { service: name.clone(), dependency: dep.clone() })?;
                deps[i].push(j);
                dependents[j].push(i);
            }
        }
        if let Some(cycle) = find_cycles(nodes).into_iter().next() {
            return Err(GraphError::Cycle(cycle));
        }
        let layer = layers_of(&deps);
        Ok(Graph { names, index, deps, dependents, layer })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Direct dependencies of service `i`.
    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// Direct dependents of service `i`.
    pub fn direct_dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// Services grouped by start layer: every service's dependencies are in earlier layers, and
    /// each is in the earliest layer that allows. Names sorted within a layer.
    pub fn layers(&self) -> Vec<Vec<&str>> {
        let depth = self.layer.iter().max().map_or(0, |m| m + 1);
        let mut layers = vec![Vec::new(); depth];
        for (i, &l) in self.layer.iter().enumerate() {
            layers[l].push(self.names[i].as_str());
        }
        layers
    }

    /// A start order: dependencies before dependents.
    pub fn start_order(&self) -> Vec<&str> {
        self.layers().into_iter().flatten().collect()
    }

    /// A stop order: dependents before their dependencies (the start order reversed).
    pub fn stop_order(&self) -> Vec<&str> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// Every service that depends on `name`, directly or through others, in start order.
    pub fn dependents_of(&self, name: &str) -> Vec<&str> {
        let Some(start) = self.index_of(name) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            for &j in &self.dependents[i] {
                if seen.insert(j) {
                    todo.push(j);
                }
            }
        }
        let mut out: Vec<usize> = seen.into_iter().collect();
        out.sort_by_key(|&i| (self.layer[i], &self.names[i]));
        out.into_iter().map(|i| self.names[i].as_str()).collect()
    }
}

/// Longest-path layering of an acyclic graph (Kahn's algorithm).
fn layers_of(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut layer = vec![0; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    while let Some(i) = ready.pop() {
        for &j in &dependents[i] {
            layer[j] = layer[j].max(layer[i] + 1);
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    layer
}

/// Every distinct cycle reachable by a depth-first search, each written from its smallest name
/// and closed: `["a", "b", "c", "a"]`. Dependencies on names that are not nodes are ignored.
pub fn find_cycles(nodes: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    struct Dfs<'a> {
        nodes: &'a BTreeMap<String, Vec<String>>,
        mark: HashMap<&'a str, Mark>,
        path: Vec<&'a str>,
        cycles: BTreeSet<Vec<String>>,
    }
    impl<'a> Dfs<'a> {
        fn visit(&mut self, name: &'a str) {
            self.mark.insert(name, Mark::OnPath);
            self.path.push(name);
            for dep in self.nodes.get(name).into_iter().flatten() {
                match self.mark.get(dep.as_str()).copied() {
                    Some(Mark::OnPath) => {
                        let from = self.path.iter().rposition(|&p| p == dep).unwrap_or(0);
                        self.cycles.insert(canonical(&self.path[from..]));
                    }
                    Some(Mark::New) => self.visit(dep),
                    Some(Mark::Done) | None => {}
                }
            }
            self.path.pop();
            self.mark.insert(name, Mark::Done);
        }
    }
    let mark = nodes.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut dfs = Dfs { nodes, mark, path: Vec::new(), cycles: BTreeSet::new() };
    for name in nodes.keys() {
        if dfs.mark[name.as_str()] == Mark::New {
            dfs.visit(name);
        }
    }
    dfs.cycles.into_iter().collect()
}

/// Rotates a cycle to start at its smallest name and closes it.
fn canonical(cycle: &[&str]) -> Vec<String> {
    let start = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
    let mut out: Vec<String> = cycle[start..].iter().chain(&cycle[..start]).map(|s| s.to_string()).collect();
    if let Some(first) = out.first().cloned() {
        out.push(first);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges.iter().map(|(n, ds)| (n.to_string(), ds.iter().map(|d| d.to_string()).collect())).collect()
    }

    fn diamond() -> Graph {
        Graph::new(&nodes(&[
            ("db", &[]),
            ("cache", &[]),
            ("api", &["db", "cache"]),
            ("worker", &["db"]),
            ("web", &["api"]),
        ]))
        .unwrap()
    }

    #[test]
    fn layers_follow_the_deepest_dependency_only() {
        let g = diamond();
        assert_eq!(g.layers(), vec![vec!["cache", "db"], vec!["api", "worker"], vec!["web"]]);
    }

    #[test]
    fn start_order_puts_every_dependency_first_and_stop_order_reverses_it() {
        let g = diamond();
        let start = g.start_order();
        let pos = |n: &str| start.iter().position(|s| *s == n).unwrap();
        for (svc, deps) in [("api", ["db", "cache"].as_slice()), ("worker", &["db"]), ("web", &["api"])] {
            for d in deps {
                assert!(pos(d) < pos(svc), "{d} before {svc}");
            }
        }
        let mut reversed = g.stop_order();
        reversed.reverse();
        assert_eq!(reversed, start);
    }

    #[test]
    fn dependents_are_transitive() {
        let g = diamond();
        assert_eq!(g.dependents_of("db"), vec!["api", "worker", "web"]);
        assert_eq!(g.dependents_of("web"), Vec::<&str>::new());
        assert_eq!(g.dependents_of("nope"), Vec::<&str>::new());
    }

    #[test]
    fn a_cycle_is_named_in_full() {
        let err =
            Graph::new(&nodes(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])])).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn distinct_cycles_are_each_reported_once() {
        let cycles = find_cycles(&nodes(&[("a", &["a"]), ("b", &["c"]), ("c", &["b"]), ("d", &[])]));
        assert_eq!(cycles, vec![vec!["a", "a"], vec!["b", "c", "b"]]);
    }

    #[test]
    fn unknown_dependencies_are_refused() {
        let err = Graph::new(&nodes(&[("a", &["ghost"])])).unwrap_err();
        assert!(matches!(err, GraphError::Unknown { .. }));
    }
}
