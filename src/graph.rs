//! The dependency graph.
