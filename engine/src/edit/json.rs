//! Where each value of a JSON document sits in its source text.
//!
//! JSON config files (a `values.json`, a kustomization written as JSON, an Argo CD
//! `config.json`) get the same treatment as YAML: the one value changes, every other byte
//! stays. JSON is a subset of YAML, but the YAML renderer would write YAML-only escapes and
//! quoting styles into it, so JSON has its own small indexer here, addressed by the same
//! [`YamlPath`] as YAML and producing byte spans for the editor to splice.

use std::collections::HashMap;

use gantry_workflows::spans::YamlPath;

/// Deepest nesting accepted; deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

/// What kind of JSON value a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    /// `"…"`.
    String,
    /// A number literal.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
    /// `{…}`.
    Object,
    /// `[…]`.
    Array,
}

/// One value of the document.
#[derive(Debug, Clone)]
pub(crate) struct JsonNode {
    /// Kind of value.
    pub(crate) kind: JsonKind,
    /// Byte offset of the first byte of the value.
    pub(crate) start: usize,
    /// Byte offset just past the value.
    pub(crate) end: usize,
    /// 1-based line of `start`.
    pub(crate) line: usize,
    /// For scalars: the decoded string, or the literal text of a number, boolean or null.
    pub(crate) scalar: Option<String>,
    /// For objects and arrays: how many members or items.
    pub(crate) len: usize,
    /// For object members: where the key (with its quotes) starts.
    pub(crate) key_start: Option<usize>,
}

/// The document is not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonSyntaxError {
    /// 1-based line of the problem.
    pub(crate) line: usize,
    /// 1-based column of the problem, in characters.
    pub(crate) column: usize,
    /// What is wrong there.
    pub(crate) message: String,
    /// Path of a repeated key, when that is the problem.
    pub(crate) duplicate: Option<YamlPath>,
}

/// Every value of a JSON document by path.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonIndex {
    nodes: HashMap<YamlPath, JsonNode>,
}

impl JsonIndex {
    /// Indexes `text`, which must hold exactly one JSON value (surrounded by whitespace).
    pub(crate) fn parse(text: &str) -> Result<JsonIndex, JsonSyntaxError> {
        let mut parser = Parser { text, bytes: text.as_bytes(), at: 0, index: JsonIndex::default() };
        // A byte order mark is not JSON, but editors write one; it is skipped, not kept out.
        if text.starts_with('\u{feff}') {
            parser.at = '\u{feff}'.len_utf8();
        }
        parser.skip_blanks();
        parser.value(YamlPath::root(), None, 0)?;
        parser.skip_blanks();
        if parser.at < parser.bytes.len() {
            return Err(parser.error("unexpected text after the document"));
        }
        Ok(parser.index)
    }

    /// The node at `path`.
    pub(crate) fn get(&self, path: &YamlPath) -> Option<&JsonNode> {
        self.nodes.get(path)
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    index: JsonIndex,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> JsonSyntaxError {
        let before = &self.text[..floor_char_boundary(self.text, self.at)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
        JsonSyntaxError { line, column, message: message.to_owned(), duplicate: None }
    }

    fn line_at(&self, offset: usize) -> usize {
        self.bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, message: &str) -> Result<(), JsonSyntaxError> {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(message))
        }
    }

    fn value(&mut self, path: YamlPath, key_start: Option<usize>, depth: usize) -> Result<(), JsonSyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("the document nests deeper than 256 levels"));
        }
        let start = self.at;
        let (kind, scalar, len) = match self.bytes.get(self.at) {
            Some(b'{') => (JsonKind::Object, None, self.object(&path, depth)?),
            Some(b'[') => (JsonKind::Array, None, self.array(&path, depth)?),
            Some(b'"') => (JsonKind::String, Some(self.string()?), 0),
            Some(b't') => (JsonKind::Bool, Some(self.literal("true")?), 0),
            Some(b'f') => (JsonKind::Bool, Some(self.literal("false")?), 0),
            Some(b'n') => (JsonKind::Null, Some(self.literal("null")?), 0),
            Some(b'-' | b'0'..=b'9') => (JsonKind::Number, Some(self.number()?), 0),
            Some(_) => return Err(self.error("expected a value")),
            None => return Err(self.error("the document ends where a value was expected")),
        };
        let node = JsonNode { kind, start, end: self.at, line: self.line_at(start), scalar, len, key_start };
        self.index.nodes.insert(path, node);
        Ok(())
    }

    fn object(&mut self, path: &YamlPath, depth: usize) -> Result<usize, JsonSyntaxError> {
        self.at += 1;
        self.skip_blanks();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(0);
        }
        let mut count = 0;
        loop {
            self.skip_blanks();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.error("expected a member name in double quotes"));
            }
            let key_start = self.at;
            let key = self.string()?;
            let member = path.clone().with_key(key);
            if self.index.nodes.contains_key(&member) {
                let mut error = self.error("a member name appears twice");
                error.line = self.line_at(key_start);
                error.duplicate = Some(member);
                return Err(error);
            }
            self.skip_blanks();
            self.expect(b':', "expected `:` after the member name")?;
            self.skip_blanks();
            self.value(member, Some(key_start), depth + 1)?;
            count += 1;
            self.skip_blanks();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(count);
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, path: &YamlPath, depth: usize) -> Result<usize, JsonSyntaxError> {
        self.at += 1;
        self.skip_blanks();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(0);
        }
        let mut count = 0;
        loop {
            self.skip_blanks();
            self.value(path.clone().with_index(count), None, depth + 1)?;
            count += 1;
            self.skip_blanks();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(count);
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<String, JsonSyntaxError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(word.to_owned())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn number(&mut self) -> Result<String, JsonSyntaxError> {
        let start = self.at;
        let end = number_end(self.bytes, start).ok_or_else(|| self.error("malformed number"))?;
        self.at = end;
        Ok(self.text[start..end].to_owned())
    }

    /// Reads a string token (the cursor is on its opening quote) and returns it decoded.
    fn string(&mut self) -> Result<String, JsonSyntaxError> {
        self.at += 1;
        let mut decoded = String::new();
        loop {
            let run_start = self.at;
            while let Some(&byte) = self.bytes.get(self.at) {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.at += 1;
            }
            decoded.push_str(&self.text[run_start..self.at]);
            match self.bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(decoded);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut decoded)?;
                }
                Some(_) => return Err(self.error("control character inside a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self, decoded: &mut String) -> Result<(), JsonSyntaxError> {
        let Some(&byte) = self.bytes.get(self.at) else {
            return Err(self.error("unterminated string"));
        };
        self.at += 1;
        let simple = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                let c = if (0xd800..0xdc00).contains(&high) {
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return Err(self.error("lone surrogate in a \\u escape"));
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return Err(self.error("lone surrogate in a \\u escape"));
                    }
                    char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00))
                } else {
                    char::from_u32(high)
                };
                c.ok_or_else(|| self.error("lone surrogate in a \\u escape"))?
            }
            _ => return Err(self.error("unknown escape in a string")),
        };
        decoded.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonSyntaxError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .filter(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected four hexadecimal digits after \\u"))?;
        let value =
            u32::from_str_radix(digits, 16).map_err(|_| self.error("expected four hexadecimal digits after \\u"))?;
        self.at += 4;
        Ok(value)
    }
}

/// End of the number token starting at `start`, or `None` when it is malformed.
fn number_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    let digits = |at: &mut usize| {
        let from = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at > from
    };
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    if bytes.get(at) == Some(&b'0') {
        at += 1;
    } else if !digits(&mut at) {
        return None;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if !digits(&mut at) {
            return None;
        }
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        if !digits(&mut at) {
            return None;
        }
    }
    // `01` or `1x`: the token does not end where a number must.
    match bytes.get(at) {
        Some(b) if b.is_ascii_alphanumeric() || *b == b'.' => None,
        _ => Some(at),
    }
}

/// Whether `value` is a JSON number literal as a whole.
pub(crate) fn is_number(value: &str) -> bool {
    !value.is_empty() && number_end(value.as_bytes(), 0) == Some(value.len())
}

/// `value` as a JSON string literal: only what JSON requires is escaped.
pub(crate) fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dotted: &str) -> YamlPath {
        YamlPath::parse(dotted).unwrap()
    }

    #[test]
    fn indexes_nested_values_with_spans() {
        let text = "{\n  \"image\": {\"tag\": \"1.0\", \"pull\": null},\n  \"ports\": [80, -4.5e2, true]\n}\n";
        let index = JsonIndex::parse(text).unwrap();
        let tag = index.get(&path("image.tag")).unwrap();
        assert_eq!(&text[tag.start..tag.end], "\"1.0\"");
        assert_eq!(tag.scalar.as_deref(), Some("1.0"));
        assert_eq!(tag.line, 2);
        assert_eq!(&text[tag.key_start.unwrap()..tag.start], "\"tag\": ", "the key span leads to the value");
        assert_eq!(index.get(&path("ports[1]")).unwrap().scalar.as_deref(), Some("-4.5e2"));
        assert_eq!(index.get(&path("ports")).unwrap().len, 3);
        assert_eq!(index.get(&path("image.pull")).unwrap().kind, JsonKind::Null);
        assert_eq!(index.get(&YamlPath::root()).unwrap().kind, JsonKind::Object);
    }

    #[test]
    fn decodes_escapes() {
        let text = r#"{"a": "x\"\\\/\n\u00e9\ud83d\ude00"}"#;
        let index = JsonIndex::parse(text).unwrap();
        assert_eq!(index.get(&path("a")).unwrap().scalar.as_deref(), Some("x\"\\/\né😀"));
    }

    #[test]
    fn rejects_malformed_documents_with_positions() {
        for (text, line, column) in [
            ("{\"a\": 1,}", 1, 9),
            ("{\"a\" 1}", 1, 6),
            ("[1, 2", 1, 6),
            ("{\n  \"a\": 01\n}", 2, 8),
            ("\"abc", 1, 5),
            ("{\"a\": tru}", 1, 7),
            ("{} {}", 1, 4),
            ("", 1, 1),
            ("\"\\ud800\"", 1, 8),
        ] {
            let error = JsonIndex::parse(text).unwrap_err();
            assert_eq!((error.line, error.column), (line, column), "{text:?}: {error:?}");
        }
        let error = JsonIndex::parse("{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!(error.duplicate, Some(path("a")));
        assert_eq!(error.line, 2);
        let deep = "[".repeat(10_000);
        assert!(JsonIndex::parse(&deep).is_err());
    }

    #[test]
    fn numbers_and_quoting() {
        for number in ["0", "-1", "1.5", "1e9", "2E-3", "-0.0"] {
            assert!(is_number(number), "{number}");
        }
        for not_number in ["", "-", "01", "1.", ".5", "1e", "0x1", "1.2.3", "+1"] {
            assert!(!is_number(not_number), "{not_number}");
        }
        assert_eq!(quoted("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
