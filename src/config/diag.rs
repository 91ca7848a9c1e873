//! Diagnostics: every problem found in a services.toml, located by byte span or by key path and
//! rendered as `FILE:LINE:COL: path.to.key: message`, sorted by position, all at once.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem, before it is placed in the file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Dotted key path (`services.titan-brain.depends_on[1]`); empty when only a span is known.
    pub path: String,
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Collects diagnostics while the file is read and checked.
#[derive(Debug, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// A problem with the value at `path`.
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Diagnostic { path: path.into(), span: None, message: message.into() });
    }

    /// A problem at a byte span of the file (serde and parser errors).
    pub fn at_span(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.0.push(Diagnostic { path: String::new(), span, message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Places every diagnostic in the file and sorts them by position.
    pub fn locate(self, file: &str, text: &str, index: &SpanIndex) -> Report {
        let lines = LineIndex::new(text);
        let mut items: Vec<Located> = self
            .0
            .into_iter()
            .map(|d| {
                let span = d.span.clone().or_else(|| index.span_of(&d.path));
                let path = if d.path.is_empty() {
                    span.as_ref().and_then(|s| index.path_at(s)).unwrap_or_default()
                } else {
                    d.path
                };
                let (line, column) = span.map_or((1, 1), |s| lines.line_col(s.start));
                Located { line, column, path: display_path(&path), message: d.message }
            })
            .collect();
        items.sort_by(|a, b| (a.line, a.column, &a.path).cmp(&(b.line, b.column, &b.path)));
        items.dedup_by(|a, b| a.line == b.line && a.column == b.column && a.message == b.message);
        Report { file: file.to_owned(), items }
    }
}

/// A diagnostic placed in its file.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
}

/// Every problem of one file; `Display` prints one `FILE:LINE:COL: path: message` per line.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub file: String,
    #[serde(rename = "errors")]
    pub items: Vec<Located>,
}

impl Report {
    /// A report of a single problem that has no place in the file (e.g. it cannot be read).
    pub fn single(file: &str, message: impl Into<String>) -> Self {
        let item = Located { line: 1, column: 1, path: String::new(), message: message.into() };
        Report { file: file.to_owned(), items: vec![item] }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for it in &self.items {
            write!(f, "{}:{}:{}: ", self.file, it.line, it.column)?;
            if !it.path.is_empty() {
                write!(f, "{}: ", it.path)?;
            }
            writeln!(f, "{}", it.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// Paths are indexed with array positions (`depends_on[1]`) for precise spans, but shown
/// without them: the column already points at the element.
fn display_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Byte offset → 1-based line and column (columns count characters, as editors do).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// Where every key and value of the document is: key path → key span and value span.
#[derive(Debug, Default)]
pub struct SpanIndex {
    entries: Vec<(String, Range<usize>, Range<usize>)>,
    by_path: HashMap<String, usize>,
}

impl SpanIndex {
    pub fn build(root: &DeTable<'_>) -> Self {
        let mut index = SpanIndex::default();
        index.walk_table("", root);
        index
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table {
            let path = join(prefix, key.get_ref());
            self.push(path.clone(), key.span(), value.span());
            self.walk_value(&path, value);
        }
    }

    fn walk_value(&mut self, path: &str, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(t) => self.walk_table(path, t),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.push(item_path.clone(), item.span(), item.span());
                    self.walk_value(&item_path, item);
                }
            }
            _ => {}
        }
    }

    fn push(&mut self, path: String, key: Range<usize>, value: Range<usize>) {
        self.by_path.insert(path.clone(), self.entries.len());
        self.entries.push((path, key, value));
    }

    /// The span of the value at `path`, or of the nearest ancestor that exists in the file
    /// (a value inherited from `[defaults]` is reported at the service's table).
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(&i) = self.by_path.get(p) {
                return Some(self.entries[i].2.clone());
            }
            p = &p[..p.rfind(['.', '['])?];
        }
    }

    /// The span of the key at `path` itself (for "unknown key"-like problems).
    pub fn key_span_of(&self, path: &str) -> Option<Range<usize>> {
        self.by_path.get(path).map(|&i| self.entries[i].1.clone())
    }

    /// The deepest key path whose key or value contains `span`.
    pub fn path_at(&self, span: &Range<usize>) -> Option<String> {
        let inside = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter(|(_, k, v)| inside(k) || inside(v))
            .min_by_key(|(_, k, v)| if inside(k) { k.len() } else { v.len() })
            .map(|(p, _, _)| p.clone())
    }
}

/// Joins a key to a dotted path, quoting keys that would make the path ambiguous.
pub fn join(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if plain { key.to_owned() } else { format!("{key:?}") };
    if prefix.is_empty() { key } else { format!("{prefix}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[services.a]\ndepends_on = [\"b\", \"c\"]\n\n[services.\"x.y\"]\nimage = 1\n";

    #[test]
    fn paths_resolve_to_line_and_column() {
        let root = DeTable::parse(DOC).unwrap();
        let index = SpanIndex::build(root.get_ref());
        let mut d = Diagnostics::default();
        d.at("services.a.depends_on[1]", "unknown service \"c\"");
        d.at("services.\"x.y\".image", "bad");
        let report = d.locate("s.toml", DOC, &index);
        let text = report.to_string();
        assert_eq!(
            text,
            "s.toml:2:20: services.a.depends_on: unknown service \"c\"\n\
             s.toml:5:9: services.\"x.y\".image: bad\n"
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let root = DeTable::parse(DOC).unwrap();
        let index = SpanIndex::build(root.get_ref());
        let own = index.span_of("services.a.depends_on").unwrap();
        assert_eq!(index.span_of("services.a.depends_on[7]"), Some(own));
        assert!(index.span_of("services.a.memory").is_some());
        assert_eq!(index.span_of("nothing.here"), None);
    }

    #[test]
    fn a_span_maps_back_to_the_deepest_path() {
        let root = DeTable::parse(DOC).unwrap();
        let index = SpanIndex::build(root.get_ref());
        let at = DOC.find("\"c\"").unwrap();
        assert_eq!(index.path_at(&(at..at + 3)).as_deref(), Some("services.a.depends_on[1]"));
    }
}
