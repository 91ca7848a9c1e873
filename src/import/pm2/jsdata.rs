//! Plain data out of a PM2 ecosystem file: JSON, or the JavaScript object-literal superset PM2
//! users write (`module.exports = { apps: [...] }` with unquoted keys, single quotes, trailing
//! commas and comments). Nothing is evaluated: anything that is code (a call, a variable, a
//! template literal, an operator) is refused with its line, and nesting is bounded so no input
//! can exhaust the stack.

use std::collections::HashMap;

/// Deeper than this is not an ecosystem file (a real one is four or five levels deep).
pub(crate) const MAX_DEPTH: usize = 64;

/// A value with the line it starts on, for messages.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) line: usize,
    pub(crate) data: Data,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    List(Vec<Node>),
    /// Keys in file order; a repeated key keeps its last value, as JavaScript does.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value of `key` when this is a map.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.data {
            Data::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Where and why the text is not plain data. `code` says it is JavaScript beyond data, so the
/// caller can tell the operator how to export JSON instead.
#[derive(Debug, PartialEq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub(crate) message: String,
    pub(crate) code: bool,
}

/// Parses a whole ecosystem file: an optional `module.exports =` (or `export default`), one
/// value, an optional `;`.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser { text, pos: 0, line: 1, depth: 0 };
    if p.text.starts_with("#!") {
        p.skip_line();
    }
    p.skip_blank()?;
    if p.at_end() {
        return Err(p.invalid("empty file: expected { apps: [...] } or an array of apps"));
    }
    p.use_strict()?;
    p.export_prefix()?;
    let node = p.value()?;
    p.skip_blank()?;
    p.eat(b';');
    p.skip_blank()?;
    if !p.at_end() {
        return Err(p.unexpected("after the data"));
    }
    Ok(node)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    depth: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn peek_char(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_line(&mut self) {
        while self.peek().is_some_and(|b| b != b'\n') {
            self.bump();
        }
    }

    /// Whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.text.as_bytes().get(self.pos + 1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r'), _) => {
                    self.bump();
                }
                (Some(b'/'), Some(b'/')) => self.skip_line(),
                (Some(b'/'), Some(b'*')) => {
                    let start = self.error_at(self.pos, self.line, "unterminated /* comment", false);
                    let Some(end) = self.text[self.pos + 2..].find("*/") else { return Err(start) };
                    let stop = self.pos + 2 + end + 2;
                    while self.pos < stop {
                        self.bump();
                    }
                }
                (Some(_), _) if self.peek_char().is_some_and(|c| c == '\u{feff}' || c.is_whitespace()) => {
                    self.bump();
                }
                _ => return Ok(()),
            }
        }
    }

    /// A leading `'use strict';` directive is harmless.
    fn use_strict(&mut self) -> Result<(), SyntaxError> {
        let rest = &self.text[self.pos..];
        if rest.starts_with("'use strict'") || rest.starts_with("\"use strict\"") {
            self.pos += "'use strict'".len();
            self.skip_blank()?;
            self.eat(b';');
            self.skip_blank()?;
        }
        Ok(())
    }

    /// `module.exports =` or `export default`, when present.
    fn export_prefix(&mut self) -> Result<(), SyntaxError> {
        let (start, line) = (self.pos, self.line);
        match self.ident().as_deref() {
            Some("module") => {
                self.skip_blank()?;
                let dot = self.eat(b'.');
                self.skip_blank()?;
                let exports = dot && self.ident().as_deref() == Some("exports");
                self.skip_blank()?;
                if exports && self.eat(b'=') && self.peek() != Some(b'=') {
                    return self.skip_blank();
                }
                Err(self.error_at(start, line, "expected `module.exports = { ... }`", true))
            }
            Some("export") => {
                self.skip_blank()?;
                if self.ident().as_deref() == Some("default") {
                    return self.skip_blank();
                }
                Err(self.error_at(start, line, "expected `export default { ... }`", true))
            }
            Some(_) => {
                self.pos = start;
                Err(self.unexpected("where the data should start"))
            }
            None => Ok(()),
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let line = self.line;
        let data = match self.peek() {
            Some(b'{') => self.nested(Self::map)?,
            Some(b'[') => self.nested(Self::list)?,
            Some(q @ (b'"' | b'\'')) => Data::Str(self.string(q)?),
            Some(b'-' | b'.' | b'0'..=b'9') => Data::Num(self.number()?),
            Some(_) => {
                let start = self.pos;
                match self.ident().as_deref() {
                    Some("true") => Data::Bool(true),
                    Some("false") => Data::Bool(false),
                    Some("null") => Data::Null,
                    _ => {
                        self.pos = start;
                        return Err(self.unexpected("where a value should be"));
                    }
                }
            }
            None => return Err(self.invalid("unexpected end of file: a value is missing")),
        };
        Ok(Node { line, data })
    }

    fn nested(&mut self, inner: fn(&mut Self) -> Result<Data, SyntaxError>) -> Result<Data, SyntaxError> {
        if self.depth >= MAX_DEPTH {
            return Err(
                self.invalid(&format!("nested deeper than {MAX_DEPTH} levels: not an ecosystem file"))
            );
        }
        self.depth += 1;
        self.pos += 1; // the opening bracket
        let data = inner(self);
        self.depth -= 1;
        data
    }

    fn list(&mut self) -> Result<Data, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            if self.eat(b']') {
                return Ok(Data::List(items));
            }
            items.push(self.value()?);
            self.skip_blank()?;
            if !self.eat(b',') && self.peek() != Some(b']') {
                return Err(self.unexpected("in an array (expected , or ])"));
            }
        }
    }

    fn map(&mut self) -> Result<Data, SyntaxError> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        // key → its place in `entries`: a repeated key keeps its place and takes the new value
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            self.skip_blank()?;
            if self.eat(b'}') {
                return Ok(Data::Map(entries));
            }
            let (start, line) = (self.pos, self.line);
            let key = self.key()?;
            self.skip_blank()?;
            if matches!(self.peek(), Some(b',' | b'}')) {
                let message = format!("`{key}` without a value (a variable): that is code, not plain data");
                return Err(self.error_at(start, line, &message, true));
            }
            if !self.eat(b':') {
                return Err(self.unexpected(&format!("after the key {key:?} (expected :)")));
            }
            self.skip_blank()?;
            let value = self.value()?;
            match seen.get(&key) {
                Some(&at) => entries[at].1 = value,
                None => {
                    seen.insert(key.clone(), entries.len());
                    entries.push((key, value));
                }
            }
            self.skip_blank()?;
            if !self.eat(b',') && self.peek() != Some(b'}') {
                return Err(self.unexpected("in an object (expected , or })"));
            }
        }
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(q),
            _ => self.ident().ok_or_else(|| self.unexpected("where a key should be")),
        }
    }

    /// An ASCII JavaScript identifier, when one starts here.
    fn ident(&mut self) -> Option<String> {
        let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b'$';
        if !self.peek().is_some_and(is_start) {
            return None;
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| is_start(b) || b.is_ascii_digit()) {
            self.pos += 1;
        }
        Some(self.text[start..self.pos].to_owned())
    }

    fn number(&mut self) -> Result<f64, SyntaxError> {
        let start = self.pos;
        self.eat(b'-');
        while self.peek().is_some_and(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E')) {
            let exponent = matches!(self.peek(), Some(b'e' | b'E'));
            self.pos += 1;
            if exponent && matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
        }
        let text = &self.text[start..self.pos];
        let trailing = self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() && !trailing && text.bytes().any(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(self.error_at(start, self.line, &format!("invalid number starting {text:?}"), false)),
        }
    }

    /// A string in `quote` with JavaScript's escapes.
    fn string(&mut self, quote: u8) -> Result<String, SyntaxError> {
        let (start, line) = (self.pos, self.line);
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error_at(start, line, "unterminated string", false)),
                Some(c) if c as u32 == u32::from(quote) => return Ok(out),
                Some('\\') => {
                    if let Some(c) = self.escape()? {
                        out.push(c);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// After a backslash: the character it stands for, or none for a line continuation.
    fn escape(&mut self) -> Result<Option<char>, SyntaxError> {
        let c = match self.bump() {
            None => return Err(self.invalid("unterminated string")),
            Some('\n') => return Ok(None),
            Some('\r') => {
                if self.peek() == Some(b'\n') {
                    self.bump();
                }
                return Ok(None);
            }
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('v') => '\u{b}',
            Some('0') => '\0',
            Some('x') => self.hex_char(2)?,
            Some('u') => self.unicode()?,
            Some(other) => other,
        };
        Ok(Some(c))
    }

    fn hex(&mut self, digits: usize) -> Result<u32, SyntaxError> {
        let text = self.text.get(self.pos..self.pos + digits).unwrap_or_default();
        if text.len() != digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.invalid("invalid escape: expected hex digits"));
        }
        self.pos += digits;
        u32::from_str_radix(text, 16).map_err(|_| self.invalid("invalid escape: expected hex digits"))
    }

    fn hex_char(&mut self, digits: usize) -> Result<char, SyntaxError> {
        let n = self.hex(digits)?;
        char::from_u32(n).ok_or_else(|| self.invalid("invalid escape: not a character"))
    }

    /// `\uXXXX` (a surrogate pair as two of them) or `\u{X...}`.
    fn unicode(&mut self) -> Result<char, SyntaxError> {
        if self.eat(b'{') {
            let len = self.text[self.pos..].find('}').filter(|&n| (1..=6).contains(&n));
            let Some(len) = len else { return Err(self.invalid("invalid \\u{...} escape")) };
            let c = self.hex_char(len)?;
            self.pos += 1;
            return Ok(c);
        }
        let high = self.hex(4)?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| self.invalid("invalid escape: a lone surrogate"));
        }
        let low = if self.text[self.pos..].starts_with("\\u") {
            self.pos += 2;
            self.hex(4)?
        } else {
            0
        };
        if !(0xDC00..0xE000).contains(&low) {
            return Err(self.invalid("invalid escape: a lone surrogate"));
        }
        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        char::from_u32(c).ok_or_else(|| self.invalid("invalid escape: not a character"))
    }

    /// What stands at the current position, said as an operator needs to hear it.
    fn unexpected(&mut self, context: &str) -> SyntaxError {
        let (start, line) = (self.pos, self.line);
        let Some(c) = self.peek_char() else {
            return self.invalid(&format!("unexpected end of file {context}"));
        };
        if let Some(word) = self.ident() {
            let what = match word.as_str() {
                "require" | "process" | "__dirname" | "__filename" => format!("`{word}`"),
                "const" | "let" | "var" | "function" | "import" => format!("a `{word}` statement"),
                "undefined" | "NaN" | "Infinity" => format!("`{word}` (not JSON)"),
                _ => format!("`{word}` (a variable or call)"),
            };
            return self.error_at(
                start,
                line,
                &format!("{what} {context}: that is code, not plain data"),
                true,
            );
        }
        let code =
            matches!(c, '`' | '(' | ')' | '.' | '+' | '?' | '=' | '|' | '&' | '*' | '/' | '!' | '<' | '>');
        let what = if c == '`' { "a template literal".to_owned() } else { format!("unexpected {c:?}") };
        let tail = if code { ": that is code, not plain data" } else { "" };
        self.error_at(start, line, &format!("{what} {context}{tail}"), code)
    }

    fn invalid(&self, message: &str) -> SyntaxError {
        self.error_at(self.pos, self.line, message, false)
    }

    fn error_at(&self, pos: usize, line: usize, message: &str, code: bool) -> SyntaxError {
        let pos = pos.min(self.text.len());
        let line_start = self.text[..pos].rfind('\n').map_or(0, |n| n + 1);
        let col = self.text[line_start..pos].chars().count() + 1;
        SyntaxError { line, col, message: message.to_owned(), code }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Data {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")).data
    }

    fn refused(text: &str) -> SyntaxError {
        parse(text).expect_err(text)
    }

    #[test]
    fn json_and_the_object_literal_superset_give_the_same_data() {
        let json = plain(r#"{"apps": [{"name": "a", "n": 3, "ok": true, "none": null}]}"#);
        let js = plain(
            "/* eco */ module.exports = { /* the apps */ apps: [ { name: 'a', n: 3, ok: true, none: null, }, ], }; // end",
        );
        assert_eq!(js, json);
    }

    #[test]
    fn strings_keep_their_escapes_and_quotes() {
        let Data::List(items) =
            plain(r#"['it\'s', "say \"hi\"", '\u00e9\x41\n', "\uD83D\uDE00", '\u{1F600}']"#)
        else {
            panic!("a list")
        };
        let texts: Vec<_> = items.into_iter().map(|n| n.data).collect();
        let want = ["it's", "say \"hi\"", "\u{e9}A\n", "\u{1F600}", "\u{1F600}"];
        assert_eq!(texts, want.map(|s| Data::Str(s.to_owned())));
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        let num = |n| Node { line: 1, data: Data::Num(n) };
        assert_eq!(
            plain("{a: 1, b: 2, a: 3}"),
            Data::Map(vec![("a".into(), num(3.0)), ("b".into(), num(2.0))])
        );
    }

    #[test]
    fn nodes_carry_the_line_they_start_on() {
        let root = parse("{\n apps: [\n  {\n   name: 'x'\n  }\n ]\n}").unwrap();
        let app = match &root.get("apps").unwrap().data {
            Data::List(apps) => apps[0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((app.line, app.get("name").unwrap().line), (3, 4));
    }

    #[test]
    fn code_is_refused_with_its_line_and_column() {
        let cases = [
            ("module.exports = {\n  apps: require('./apps'),\n}", 2, 9),
            ("module.exports = {\n apps: [{ name: 'a', script: path.join(__dirname, 'x') }] }", 2, 30),
            ("const apps = [];\nmodule.exports = { apps };", 1, 1),
            ("module.exports = { apps };", 1, 20),
            ("module.exports = {\n env: { A: process.env.A } }", 2, 12),
            ("{ a: `tmpl` }", 1, 6),
            ("{ a: 'x' + 'y' }", 1, 10),
            ("{ apps: [] }.apps", 1, 13),
            ("{ start() { return 1 } }", 1, 8),
        ];
        for (text, line, col) in cases {
            let e = refused(text);
            assert!(e.code, "{text}: {e:?}");
            assert_eq!((e.line, e.col), (line, col), "{text}: {e:?}");
        }
    }

    #[test]
    fn broken_data_is_refused_as_a_syntax_error() {
        for text in
            ["", "   // only a comment\n", "{", "[1,,2]", "{a 1}", "'open", "/* open", "01x", "-", "{1: 2}"]
        {
            let e = refused(text);
            assert!(!e.code, "{text:?}: {e:?}");
        }
    }

    #[test]
    fn a_map_of_many_keys_parses_without_quadratic_work() {
        let text: String = (0..150_000).map(|i| format!("k{}: {i},", i % 100_000)).collect();
        let Data::Map(entries) = plain(&format!("{{{text}}}")) else { panic!("a map") };
        assert_eq!(entries.len(), 100_000);
        assert_eq!(entries[5].1.data, Data::Num(100_005.0));
    }

    #[test]
    fn nesting_is_bounded_whatever_the_depth() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(refused(&deep).message.contains("nested deeper than 64"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }
}
