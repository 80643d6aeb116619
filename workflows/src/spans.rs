//! Where each node of a YAML document sits in its source text.
//!
//! Promotion steps rewrite one value in a config repo and must leave every other byte alone,
//! so that the pull request shows exactly the line that changed. No maintained Rust crate edits
//! YAML while keeping comments, quoting and layout byte-for-byte, so this module indexes the
//! source positions itself: `saphyr-parser` yields events with source markers, and
//! [`SpanIndex`] turns them into exact byte ranges addressed by [`YamlPath`]. The editor in
//! `gantry-engine` splices new text into those ranges.
//!
//! Two quirks of the parser's markers shape the code below. Markers count characters, not
//! bytes, so every marker goes through a character-to-byte table before it touches the text.
//! And a marker's range is not always the token: it starts at a node's anchor or tag rather
//! than at the scalar, and for a quoted scalar it runs on over trailing blanks and a trailing
//! comment. So the start and end of each scalar token are found again by scanning the source
//! from the marker.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;

use saphyr_parser::{Event, Parser, ScalarStyle as ParserStyle};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The value of a mapping entry, by its key (as decoded, without quotes).
    Key(String),
    /// An item of a sequence, counted from zero.
    Index(usize),
}

/// A path such as `environments[2].registry`.
///
/// The empty path addresses the root node. Keys that contain `.`, `[`, `]`, `"` or `\`, or
/// that are empty, are written in double quotes with `\"` and `\\` escapes:
/// `annotations."gantry.dev/owner"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct YamlPath(pub Vec<Segment>);

/// A path string that is not valid [`YamlPath`] syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse yaml path `{path}` at character {position}: {reason}")]
pub struct PathSyntaxError {
    /// The text that was given.
    pub path: String,
    /// 1-based character position of the problem.
    pub position: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl YamlPath {
    /// The path of the root node.
    #[must_use]
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses `a.b[0].c` (see the type docs for quoting).
    ///
    /// # Errors
    /// Returns [`PathSyntaxError`] for an empty key, an unterminated quote or bracket, or an
    /// index that is not a number.
    pub fn parse(dotted: &str) -> Result<Self, PathSyntaxError> {
        let chars: Vec<char> = dotted.chars().collect();
        let fail = |position: usize, reason: &'static str| PathSyntaxError {
            path: dotted.to_owned(),
            position: position + 1,
            reason,
        };
        let mut segments = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '[' => {
                    let digits_start = i + 1;
                    let mut j = digits_start;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    if j == digits_start {
                        return Err(fail(i, "expected a number after `[`"));
                    }
                    if chars.get(j) != Some(&']') {
                        return Err(fail(j, "expected `]` after the index"));
                    }
                    let digits: String = chars[digits_start..j].iter().collect();
                    let index = digits.parse::<usize>().map_err(|_| fail(digits_start, "index is too large"))?;
                    segments.push(Segment::Index(index));
                    i = j + 1;
                }
                '.' if segments.is_empty() => return Err(fail(i, "path starts with `.`")),
                _ => {
                    // A key follows: after a `.` separator, or at the very start.
                    if !segments.is_empty() {
                        if chars[i] != '.' {
                            return Err(fail(i, "expected `.` or `[` between segments"));
                        }
                        i += 1;
                    }
                    let (key, next) = parse_key(&chars, i).map_err(|(at, why)| fail(at, why))?;
                    segments.push(Segment::Key(key));
                    i = next;
                }
            }
        }
        Ok(Self(segments))
    }

    /// Appends a mapping key.
    pub fn push_key(&mut self, key: impl Into<String>) {
        self.0.push(Segment::Key(key.into()));
    }

    /// Appends a sequence index.
    pub fn push_index(&mut self, index: usize) {
        self.0.push(Segment::Index(index));
    }

    /// This path extended by a mapping key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.push_key(key);
        self
    }

    /// This path extended by a sequence index.
    #[must_use]
    pub fn with_index(mut self, index: usize) -> Self {
        self.push_index(index);
        self
    }

    /// The path of the enclosing node, or `None` for the root.
    #[must_use]
    pub fn parent(&self) -> Option<YamlPath> {
        let (_, init) = self.0.split_last()?;
        Some(YamlPath(init.to_vec()))
    }

    /// The last segment, or `None` for the root.
    #[must_use]
    pub fn last(&self) -> Option<&Segment> {
        self.0.last()
    }

    /// Whether this is the root path.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads one key starting at `start`; returns it and the index just past it.
fn parse_key(chars: &[char], start: usize) -> Result<(String, usize), (usize, &'static str)> {
    if chars.get(start) == Some(&'"') {
        let mut key = String::new();
        let mut i = start + 1;
        loop {
            match chars.get(i) {
                None => return Err((start, "unterminated quoted key")),
                Some('"') => return Ok((key, i + 1)),
                Some('\\') => match chars.get(i + 1) {
                    Some(c @ ('"' | '\\')) => {
                        key.push(*c);
                        i += 2;
                    }
                    _ => return Err((i, "only `\\\"` and `\\\\` escapes are allowed")),
                },
                Some(c) => {
                    key.push(*c);
                    i += 1;
                }
            }
        }
    }
    let mut i = start;
    while i < chars.len() && !matches!(chars[i], '.' | '[') {
        if matches!(chars[i], ']' | '"' | '\\') {
            return Err((i, "this character needs a quoted key"));
        }
        i += 1;
    }
    if i == start {
        return Err((start, "empty key"));
    }
    Ok((chars[start..i].iter().collect(), i))
}

impl FromStr for YamlPath {
    type Err = PathSyntaxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    let needs_quotes =
                        key.is_empty() || key.contains(['.', '[', ']', '"', '\\']) || key.starts_with('.');
                    if needs_quotes {
                        f.write_str("\"")?;
                        for c in key.chars() {
                            if matches!(c, '"' | '\\') {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    } else {
                        f.write_str(key)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// How a node is written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarStyle {
    /// An unquoted scalar (also an empty value such as `key:`).
    Plain,
    /// A scalar in `'single quotes'`.
    SingleQuoted,
    /// A scalar in `"double quotes"`.
    DoubleQuoted,
    /// A literal block scalar (`|`).
    Literal,
    /// A folded block scalar (`>`).
    Folded,
    /// A mapping, a sequence or an alias.
    NotScalar,
}

/// What kind of node sits at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A scalar of any style.
    Scalar,
    /// An alias (`*name`) that refers to an anchored node elsewhere.
    Alias,
    /// A mapping.
    Mapping,
    /// A sequence.
    Sequence,
}

/// Where a node's text is: a byte range of the source, plus the 1-based line and column
/// (counted in characters) of its start.
///
/// For a scalar the range is the scalar token itself, quotes included, without any anchor or
/// tag in front of it; for an empty value (`key:`) it is the empty range where a value would
/// go. For a block scalar it starts at the `|` or `>` indicator. For an alias it is the `*name`
/// token. For a flow collection it runs from the opening to the closing bracket; for a block
/// collection from its first entry to the end of its last value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset just past the last byte.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column of `start`, in characters.
    pub column: usize,
    /// How the node is written.
    pub style: ScalarStyle,
}

impl Span {
    /// The byte range, ready for slicing the source text.
    #[must_use]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A YAML text that could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// The text is not valid YAML.
    #[error("parse yaml at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem, in characters.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A mapping has the same key twice, so a path would be ambiguous.
    #[error("parse yaml: key `{path}` appears twice (second time at line {line}, column {column})")]
    DuplicateKey {
        /// Path of the repeated entry.
        path: YamlPath,
        /// 1-based line of the second occurrence.
        line: usize,
        /// 1-based column of the second occurrence.
        column: usize,
    },
}

/// Everything known about one node.
#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    value: Span,
    key: Option<Span>,
    /// The decoded text, for scalars.
    scalar: Option<String>,
    /// Number of entries, for collections.
    len: usize,
    /// Whether the node is a flow collection or sits inside one.
    in_flow: bool,
    /// For an alias, the anchor it refers to.
    alias_of: Option<usize>,
}

/// Positions of every key and value in the first document of a YAML text.
///
/// Nodes are addressed by [`YamlPath`]. Anchored nodes are indexed where they are written; an
/// alias is indexed as the `*name` token only, so paths that run through an alias (or through a
/// `<<` merge) find nothing. Keys that are not scalars (complex `? [a, b]` keys) and everything
/// below them are not addressable and are skipped.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    nodes: HashMap<YamlPath, Node>,
    /// Paths of anchored nodes, by the parser's anchor id.
    anchors: HashMap<usize, YamlPath>,
}

impl SpanIndex {
    /// Indexes the first document of `text`; later documents are not read.
    ///
    /// # Errors
    /// Returns [`SpanError::Syntax`] when the first document is not valid YAML and
    /// [`SpanError::DuplicateKey`] when a mapping repeats a key.
    pub fn parse(text: &str) -> Result<SpanIndex, SpanError> {
        // The parser has been known to panic on some malformed input; a config file someone
        // pushed must never take the process down, so a panic becomes a syntax error here.
        match catch_unwind(AssertUnwindSafe(|| Builder::new(text).run())) {
            Ok(result) => result,
            Err(_) => Err(SpanError::Syntax {
                line: 1,
                column: 1,
                message: "the yaml parser gave up on this input".to_owned(),
            }),
        }
    }

    /// Span of the value node at `path`.
    #[must_use]
    pub fn value(&self, path: &YamlPath) -> Option<&Span> {
        self.nodes.get(path).map(|node| &node.value)
    }

    /// Span of the mapping key whose value is at `path` (`None` for sequence items and the root).
    #[must_use]
    pub fn key(&self, path: &YamlPath) -> Option<&Span> {
        self.nodes.get(path).and_then(|node| node.key.as_ref())
    }

    /// Kind of the node at `path`.
    #[must_use]
    pub fn kind(&self, path: &YamlPath) -> Option<NodeKind> {
        self.nodes.get(path).map(|node| node.kind)
    }

    /// Decoded text of the scalar at `path` (quotes and escapes resolved); `None` if there is
    /// no node there or it is not a scalar.
    #[must_use]
    pub fn scalar(&self, path: &YamlPath) -> Option<&str> {
        self.nodes.get(path).and_then(|node| node.scalar.as_deref())
    }

    /// Whether the node at `path` is a flow collection or sits inside one (`{a: 1}`, `[x, y]`),
    /// where `,`, brackets and braces end a plain scalar.
    #[must_use]
    pub fn is_flow(&self, path: &YamlPath) -> Option<bool> {
        self.nodes.get(path).map(|node| node.in_flow)
    }

    /// For an alias at `path`, the path of the anchored node it refers to (when that node is
    /// addressable).
    #[must_use]
    pub fn alias_target(&self, path: &YamlPath) -> Option<&YamlPath> {
        let anchor = self.nodes.get(path)?.alias_of?;
        self.anchors.get(&anchor)
    }

    /// Line of the deepest existing node along `path` (for error messages about fields that may
    /// be missing). For a mapping entry this is the line of its key.
    #[must_use]
    pub fn line_of(&self, path: &YamlPath) -> Option<usize> {
        (0..=path.0.len()).rev().find_map(|depth| {
            let prefix = YamlPath(path.0[..depth].to_vec());
            let node = self.nodes.get(&prefix)?;
            Some(node.key.map_or(node.value.line, |key| key.line))
        })
    }

    /// Number of items of the sequence at `path`.
    #[must_use]
    pub fn sequence_len(&self, path: &YamlPath) -> Option<usize> {
        let node = self.nodes.get(path)?;
        (node.kind == NodeKind::Sequence).then_some(node.len)
    }

    /// Every addressable path, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = &YamlPath> {
        self.nodes.keys()
    }

    /// Number of entries of the mapping at `path`.
    #[must_use]
    pub fn mapping_len(&self, path: &YamlPath) -> Option<usize> {
        let node = self.nodes.get(path)?;
        (node.kind == NodeKind::Mapping).then_some(node.len)
    }
}

/// Byte offsets and line starts of the source, for turning parser markers into spans.
struct Source<'a> {
    text: &'a str,
    /// Byte offset of each character, plus `text.len()` at the end; empty for ASCII text,
    /// where characters and bytes coincide.
    char_bytes: Vec<usize>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let char_bytes = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices().map(|(byte, _)| byte).chain(std::iter::once(text.len())).collect()
        };
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            let breaks = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if breaks {
                line_starts.push(i + 1);
            }
        }
        Self { text, char_bytes, line_starts }
    }

    /// Byte offset of a parser marker (a character index).
    fn byte(&self, char_index: usize) -> usize {
        if self.char_bytes.is_empty() {
            char_index.min(self.text.len())
        } else {
            self.char_bytes.get(char_index).copied().unwrap_or(self.text.len())
        }
    }

    fn at(&self, byte: usize) -> Option<u8> {
        self.text.as_bytes().get(byte).copied()
    }

    /// 1-based line and character column of a byte offset.
    fn line_column(&self, byte: usize) -> (usize, usize) {
        let line_index = self.line_starts.partition_point(|&start| start <= byte) - 1;
        let line_start = self.line_starts[line_index];
        let prefix = self.text.get(line_start..byte).unwrap_or("");
        // A byte order mark is not part of the first line as an editor shows it.
        let prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
        (line_index + 1, prefix.chars().count() + 1)
    }

    fn span(&self, start: usize, end: usize, style: ScalarStyle) -> Span {
        let (line, column) = self.line_column(start);
        Span { start, end: end.max(start), line, column, style }
    }

    /// Skips anchors, tags, blanks, line breaks and comments in front of a node's token.
    fn skip_properties(&self, mut p: usize) -> usize {
        while let Some(b) = self.at(p) {
            match b {
                b'&' | b'!' => p = self.property_end(p),
                b' ' | b'\t' | b'\r' | b'\n' => p += 1,
                b'#' => {
                    while !matches!(self.at(p), None | Some(b'\n' | b'\r')) {
                        p += 1;
                    }
                }
                _ => break,
            }
        }
        p
    }

    /// End of the anchor or tag that starts at `p`.
    fn property_end(&self, mut p: usize) -> usize {
        if self.at(p) == Some(b'!') && self.at(p + 1) == Some(b'<') {
            // A verbatim tag `!<...>` may hold any URI character up to its `>`.
            while !matches!(self.at(p), None | Some(b'>')) {
                p += 1;
            }
            return (p + 1).min(self.text.len());
        }
        p += 1;
        while !matches!(self.at(p), None | Some(b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}')) {
            p += 1;
        }
        p
    }

    /// Where an empty plain value goes. The parser marks it at the `:` indicator (block and
    /// flow mappings), just after a `-`, or at the value's anchor or tag.
    fn empty_value_position(&self, marker: usize) -> usize {
        let mut p = marker;
        if self.at(p) == Some(b':') {
            p += 1;
        }
        let mut position = p;
        loop {
            while matches!(self.at(p), Some(b' ' | b'\t')) {
                p += 1;
            }
            if matches!(self.at(p), Some(b'&' | b'!')) {
                p = self.property_end(p);
                position = p;
            } else {
                return position;
            }
        }
    }

    /// Exact byte range of a scalar token whose parser span is `start..end` (bytes).
    fn scalar_token(&self, start: usize, end: usize, style: ParserStyle) -> (usize, usize) {
        let p = self.skip_properties(start);
        let bytes = self.text.as_bytes();
        match style {
            // Block scalars never get here: their header is found by `block_indicator`, which
            // needs the parser state.
            ParserStyle::Plain | ParserStyle::Literal | ParserStyle::Folded => (p, self.trim_end(p, end)),
            ParserStyle::SingleQuoted => {
                let mut i = p + 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return (p, i + 1);
                    }
                    i += 1;
                }
                (p, end)
            }
            ParserStyle::DoubleQuoted => {
                let mut i = p + 1;
                while i < bytes.len() {
                    match bytes[i] {
                        // Skipping one byte after `\` is enough even for a multi-byte
                        // character: UTF-8 continuation bytes never look like `"` or `\`.
                        b'\\' => i += 2,
                        b'"' => return (p, i + 1),
                        _ => i += 1,
                    }
                }
                (p, end)
            }
        }
    }

    /// The `-` of a block sequence item whose content starts at `content`, or `content` when
    /// there is no `-` right before it.
    fn dash_before(&self, content: usize) -> usize {
        let mut p = content;
        while p > 0 && matches!(self.at(p - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            p -= 1;
        }
        if self.at(content) != Some(b'-') && p > 0 && self.at(p - 1) == Some(b'-') { p - 1 } else { content }
    }

    /// Position of the `|` or `>` header of a block scalar whose content starts at `content`,
    /// scanning forward from `from` (the end of whatever came before the node) over
    /// indicators, properties and comments.
    fn block_indicator(&self, from: usize, content: usize) -> usize {
        let mut p = from;
        while p < content {
            match self.at(p) {
                Some(b'|' | b'>') => return p,
                Some(b':' | b'-' | b'?' | b',') => p += 1,
                Some(b'&' | b'!' | b' ' | b'\t' | b'\r' | b'\n' | b'#') => {
                    let next = self.skip_properties(p);
                    if next == p {
                        break;
                    }
                    p = next;
                }
                _ => break,
            }
        }
        content
    }

    /// `end` moved back over trailing blanks and line breaks, but not before `floor`.
    fn trim_end(&self, floor: usize, mut end: usize) -> usize {
        while end > floor && matches!(self.at(end - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            end -= 1;
        }
        end.max(floor)
    }
}

/// The state of a mapping between its key and its value events.
enum MappingSlot {
    /// The next node is a key.
    Key,
    /// The next node is the value of this key (`None` when the key is not a scalar).
    Value { key: Option<String>, span: Span },
}

/// An open mapping or sequence while events stream in.
struct Frame {
    /// Where this collection is, or `None` when it cannot be addressed.
    path: Option<YamlPath>,
    /// Span of the key this collection is the value of.
    key: Option<Span>,
    /// Whether this collection is itself a mapping key.
    is_key: bool,
    is_mapping: bool,
    /// Bracketed (`{}`/`[]`) collection, whose end event marks the closing bracket.
    bracketed: bool,
    in_flow: bool,
    start: usize,
    /// End of the last child seen, for block collections.
    last_end: usize,
    /// Entries so far (pairs for a mapping).
    count: usize,
    slot: MappingSlot,
}

/// Where the next node goes.
struct Placement {
    path: Option<YamlPath>,
    key: Option<Span>,
    is_key: bool,
    in_flow: bool,
}

struct Builder<'a> {
    source: Source<'a>,
    stack: Vec<Frame>,
    index: SpanIndex,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Self { source: Source::new(text), stack: Vec::new(), index: SpanIndex::default() }
    }

    fn run(mut self) -> Result<SpanIndex, SpanError> {
        let mut parser = Parser::new_from_str(self.source.text);
        let mut in_document = false;
        while let Some(next) = parser.next_event() {
            let (event, marker) = next.map_err(|error| SpanError::Syntax {
                line: error.marker().line(),
                column: error.marker().col() + 1,
                message: error.info().to_owned(),
            })?;
            let start = self.source.byte(marker.start.index());
            let end = self.source.byte(marker.end.index());
            match event {
                Event::DocumentStart(_) => in_document = true,
                // Only the first document is indexed; later ones are not even parsed.
                Event::DocumentEnd | Event::StreamEnd => break,
                Event::Nothing | Event::StreamStart => {}
                _ if !in_document => {}
                Event::Scalar(value, style, anchor, _) => {
                    self.scalar(&value, style, anchor, start, end)?;
                }
                Event::Alias(anchor) => {
                    let token_start = start;
                    let token_end = self.source.property_end(token_start);
                    let span = self.source.span(token_start, token_end, ScalarStyle::NotScalar);
                    let placement = self.place();
                    self.finish_node(placement, NodeKind::Alias, span, None, 0, Some(anchor))?;
                }
                Event::MappingStart(anchor, _) => self.open(true, anchor, start, end)?,
                Event::SequenceStart(anchor, _) => self.open(false, anchor, start, end)?,
                Event::MappingEnd | Event::SequenceEnd => self.close(end)?,
            }
        }
        Ok(self.index)
    }

    /// Decides the path of the node that starts now and advances the parent's state.
    fn place(&mut self) -> Placement {
        let Some(frame) = self.stack.last_mut() else {
            return Placement { path: Some(YamlPath::root()), key: None, is_key: false, in_flow: false };
        };
        let in_flow = frame.in_flow;
        if frame.is_mapping {
            match std::mem::replace(&mut frame.slot, MappingSlot::Key) {
                MappingSlot::Key => Placement { path: None, key: None, is_key: true, in_flow },
                MappingSlot::Value { key, span } => {
                    frame.count += 1;
                    let path = match (&frame.path, key) {
                        (Some(parent), Some(key)) => Some(parent.clone().with_key(key)),
                        _ => None,
                    };
                    Placement { path, key: Some(span), is_key: false, in_flow }
                }
            }
        } else {
            let index = frame.count;
            frame.count += 1;
            Placement {
                path: frame.path.clone().map(|parent| parent.with_index(index)),
                key: None,
                is_key: false,
                in_flow,
            }
        }
    }

    fn scalar(
        &mut self,
        value: &str,
        style: ParserStyle,
        anchor: usize,
        start: usize,
        end: usize,
    ) -> Result<(), SpanError> {
        let span = if style == ParserStyle::Plain && value.is_empty() {
            let position = self.source.empty_value_position(start);
            self.source.span(position, position, ScalarStyle::Plain)
        } else if matches!(style, ParserStyle::Literal | ParserStyle::Folded) {
            // The node starts at its `|` or `>`. The parser's span starts at the node's anchor
            // or tag when it has one, and otherwise at the content after the header.
            let has_properties = matches!(self.source.at(start), Some(b'&' | b'!'));
            let header = if has_properties {
                self.source.skip_properties(start)
            } else {
                let from = self.stack.last().map_or(0, |frame| frame.last_end);
                self.source.block_indicator(from, start)
            };
            let content_end = self.source.trim_end(start, end);
            self.source.span(header, content_end, own_style(style))
        } else {
            let (token_start, token_end) = self.source.scalar_token(start, end, style);
            self.source.span(token_start, token_end, own_style(style))
        };
        let placement = self.place();
        if placement.is_key {
            if let Some(frame) = self.stack.last_mut() {
                frame.slot = MappingSlot::Value { key: Some(value.to_owned()), span };
                frame.last_end = frame.last_end.max(span.end);
            }
            return Ok(());
        }
        self.record_anchor(anchor, placement.path.as_ref());
        self.finish_node(placement, NodeKind::Scalar, span, Some(value.to_owned()), 0, None)
    }

    fn record_anchor(&mut self, anchor: usize, path: Option<&YamlPath>) {
        if let (true, Some(path)) = (anchor != 0, path) {
            self.index.anchors.insert(anchor, path.clone());
        }
    }

    /// Records a finished node and extends the parent's end.
    fn finish_node(
        &mut self,
        placement: Placement,
        kind: NodeKind,
        span: Span,
        scalar: Option<String>,
        len: usize,
        alias_of: Option<usize>,
    ) -> Result<(), SpanError> {
        if let Some(frame) = self.stack.last_mut() {
            frame.last_end = frame.last_end.max(span.end);
            if placement.is_key {
                // A collection or alias used as a key: its entry cannot be addressed.
                frame.slot = MappingSlot::Value { key: None, span };
                return Ok(());
            }
        }
        let Some(path) = placement.path else {
            return Ok(());
        };
        self.check_unique(&path, placement.key.unwrap_or(span))?;
        self.index.nodes.insert(
            path,
            Node { kind, value: span, key: placement.key, scalar, len, in_flow: placement.in_flow, alias_of },
        );
        Ok(())
    }

    fn check_unique(&self, path: &YamlPath, at: Span) -> Result<(), SpanError> {
        if self.index.nodes.contains_key(path) {
            return Err(SpanError::DuplicateKey { path: path.clone(), line: at.line, column: at.column });
        }
        Ok(())
    }

    fn open(&mut self, is_mapping: bool, anchor: usize, start: usize, end: usize) -> Result<(), SpanError> {
        // A bracketed collection's marker ends just past its `{` or `[` (after any anchor or
        // tag); a block collection's marker ends where its first entry starts.
        let bracket = if is_mapping { b'{' } else { b'[' };
        let bracketed = end > start && self.source.at(end - 1) == Some(bracket);
        let content_start = if bracketed {
            end - 1
        } else if is_mapping {
            end
        } else {
            // A sequence indented like its parent key (`key:\n- item`) is marked at its first
            // item's content rather than at the `-`.
            self.source.dash_before(end)
        };
        let placement = self.place();
        let path = if placement.is_key { None } else { placement.path };
        if let Some(path) = &path {
            let at =
                placement.key.unwrap_or_else(|| self.source.span(content_start, content_start, ScalarStyle::NotScalar));
            self.check_unique(path, at)?;
        }
        self.record_anchor(anchor, path.as_ref());
        self.stack.push(Frame {
            path,
            key: placement.key,
            is_key: placement.is_key,
            is_mapping,
            bracketed,
            in_flow: placement.in_flow || bracketed,
            start: content_start,
            last_end: content_start,
            count: 0,
            slot: MappingSlot::Key,
        });
        Ok(())
    }

    fn close(&mut self, end: usize) -> Result<(), SpanError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let content_end = if frame.bracketed { end } else { frame.last_end };
        let span = self.source.span(frame.start, content_end, ScalarStyle::NotScalar);
        let kind = if frame.is_mapping { NodeKind::Mapping } else { NodeKind::Sequence };
        let placement = Placement { path: frame.path, key: frame.key, is_key: frame.is_key, in_flow: frame.in_flow };
        self.finish_node(placement, kind, span, None, frame.count, None)
    }
}

/// The public style of a parser scalar style.
fn own_style(style: ParserStyle) -> ScalarStyle {
    match style {
        ParserStyle::Plain => ScalarStyle::Plain,
        ParserStyle::SingleQuoted => ScalarStyle::SingleQuoted,
        ParserStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
        ParserStyle::Literal => ScalarStyle::Literal,
        ParserStyle::Folded => ScalarStyle::Folded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dotted: &str) -> YamlPath {
        YamlPath::parse(dotted).unwrap()
    }

    /// The source text a node's value span covers.
    fn value_text<'t>(text: &'t str, index: &SpanIndex, dotted: &str) -> &'t str {
        let span = index.value(&path(dotted)).unwrap_or_else(|| panic!("no value at {dotted}"));
        &text[span.range()]
    }

    fn key_text<'t>(text: &'t str, index: &SpanIndex, dotted: &str) -> &'t str {
        let span = index.key(&path(dotted)).unwrap_or_else(|| panic!("no key at {dotted}"));
        &text[span.range()]
    }

    #[test]
    fn path_round_trips_through_display() {
        for dotted in [
            "",
            "a",
            "a.b[0].c",
            "[2].name",
            "environments[2].registry",
            "m[0][1]",
            "metadata.annotations.\"gantry.dev/owner\"",
            "\"\"",
            "\"a\\\"b\\\\c\".d",
        ] {
            let parsed = path(dotted);
            assert_eq!(parsed.to_string(), dotted);
            assert_eq!(YamlPath::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }

    #[test]
    fn path_parses_into_segments() {
        assert_eq!(path("images[1].newTag"), YamlPath::root().with_key("images").with_index(1).with_key("newTag"));
        assert_eq!(path("a.\"b.c\""), YamlPath(vec![Segment::Key("a".into()), Segment::Key("b.c".into())]));
        assert!(path("").is_root());
    }

    #[test]
    fn path_syntax_errors_say_where() {
        for (dotted, position) in [
            (".a", 1),
            ("a..b", 3),
            ("a.", 3),
            ("a[", 2),
            ("a[x]", 2),
            ("a[1", 4),
            ("a[1]b", 5),
            ("a.\"b", 3),
            ("a]", 2),
            ("a.\"\\n\"", 4),
            ("a[99999999999999999999999]", 3),
        ] {
            let error = YamlPath::parse(dotted).unwrap_err();
            assert_eq!(error.position, position, "{dotted}: {error}");
            assert_eq!(error.path, dotted);
        }
    }

    #[test]
    fn quoted_scalar_spans_cover_quotes_but_not_trailing_comments() {
        let text = "a: 'quoted'  # trailing\nb: \"dq \\\" x\"   # c\nc: 'it''s'\nd: plain words  # c\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "a"), "'quoted'");
        assert_eq!(value_text(text, &index, "b"), "\"dq \\\" x\"");
        assert_eq!(value_text(text, &index, "c"), "'it''s'");
        assert_eq!(value_text(text, &index, "d"), "plain words");
        assert_eq!(index.scalar(&path("b")), Some("dq \" x"));
        assert_eq!(index.scalar(&path("c")), Some("it's"));
        let a = index.value(&path("a")).unwrap();
        assert_eq!((a.line, a.column, a.style), (1, 4, ScalarStyle::SingleQuoted));
        let b = index.value(&path("b")).unwrap();
        assert_eq!((b.line, b.column, b.style), (2, 4, ScalarStyle::DoubleQuoted));
        assert_eq!(index.key(&path("d")).unwrap().line, 4);
    }

    #[test]
    fn spans_are_byte_offsets_in_non_ascii_text() {
        let text = "# größe — 日本語\nname: 'café'\nnote: ünïcode # ✓\nlist: [α, 'β', \"γ\"]\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "name"), "'café'");
        assert_eq!(value_text(text, &index, "note"), "ünïcode");
        assert_eq!(value_text(text, &index, "list[0]"), "α");
        assert_eq!(value_text(text, &index, "list[1]"), "'β'");
        assert_eq!(value_text(text, &index, "list[2]"), "\"γ\"");
        assert_eq!(value_text(text, &index, "list"), "[α, 'β', \"γ\"]");
        let gamma = index.value(&path("list[2]")).unwrap();
        assert_eq!((gamma.line, gamma.column), (4, 16));
    }

    #[test]
    fn byte_order_mark_does_not_shift_columns() {
        let text = "\u{feff}a: 1\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "a"), "1");
        assert_eq!(index.key(&path("a")).unwrap().column, 1);
    }

    #[test]
    fn crlf_line_endings() {
        let text = "a: 1\r\nb:\r\n  c: 'x'\r\n  d: [1, 2]\r\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "b.c"), "'x'");
        assert_eq!(value_text(text, &index, "b.d"), "[1, 2]");
        assert_eq!(value_text(text, &index, "b"), "c: 'x'\r\n  d: [1, 2]");
        let c = index.value(&path("b.c")).unwrap();
        assert_eq!((c.line, c.column), (3, 6));
    }

    #[test]
    fn anchors_and_aliases() {
        let text = "base: &img !!str 'v1' # c\ncopy: *img\nres: &res\n  cpu: 1\nother:\n  <<: *res\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "base"), "'v1'");
        assert_eq!(value_text(text, &index, "copy"), "*img");
        assert_eq!(index.kind(&path("copy")), Some(NodeKind::Alias));
        assert_eq!(index.value(&path("copy")).unwrap().style, ScalarStyle::NotScalar);
        assert_eq!(index.alias_target(&path("copy")), Some(&path("base")));
        assert_eq!(value_text(text, &index, "res"), "cpu: 1");
        assert_eq!(value_text(text, &index, "res.cpu"), "1");
        assert_eq!(index.alias_target(&path("other.<<")), Some(&path("res")));
        // Nothing is reachable through an alias.
        assert_eq!(index.value(&path("other.cpu")), None);
        assert_eq!(index.scalar(&path("copy")), None);
    }

    #[test]
    fn flow_collections() {
        let text = "h: {x: 1, y: [p, 'q' , \"r\"], z: }\nimages: [{name: app, newTag: 1.0.0}, {name: db}]\ne: {}\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "h"), "{x: 1, y: [p, 'q' , \"r\"], z: }");
        assert_eq!(value_text(text, &index, "h.y"), "[p, 'q' , \"r\"]");
        assert_eq!(value_text(text, &index, "h.y[1]"), "'q'");
        assert_eq!(value_text(text, &index, "h.y[2]"), "\"r\"");
        assert_eq!(index.sequence_len(&path("h.y")), Some(3));
        assert_eq!(index.mapping_len(&path("h")), Some(3));
        assert_eq!(value_text(text, &index, "images[0].newTag"), "1.0.0");
        assert_eq!(value_text(text, &index, "images[1]"), "{name: db}");
        assert_eq!(value_text(text, &index, "e"), "{}");
        assert_eq!(index.is_flow(&path("images[1].name")), Some(true));
        assert_eq!(index.is_flow(&path("images")), Some(true));
        // An empty value sits right after its `:`.
        let z = index.value(&path("h.z")).unwrap();
        assert_eq!(z.start, z.end);
        assert_eq!(&text[..z.start], "h: {x: 1, y: [p, 'q' , \"r\"], z:");
        assert_eq!(index.scalar(&path("h.z")), Some(""));
    }

    #[test]
    fn block_collections_and_empty_values() {
        let text = "\
top:
    list:
    -   spaced
    - k: v
      l: w
    -
    - &a
    empty:
    anchored: &e
    after: 1
";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(index.is_flow(&path("top.list")), Some(false));
        assert_eq!(index.sequence_len(&path("top.list")), Some(4));
        assert_eq!(value_text(text, &index, "top.list[0]"), "spaced");
        assert_eq!(value_text(text, &index, "top.list[1]"), "k: v\n      l: w");
        assert_eq!(value_text(text, &index, "top.list"), "-   spaced\n    - k: v\n      l: w\n    -\n    - &a");
        for (dotted, before) in [
            ("top.list[2]", "    -"),
            ("top.list[3]", "    - &a"),
            ("top.empty", "    empty:"),
            ("top.anchored", "    anchored: &e"),
        ] {
            let span = index.value(&path(dotted)).unwrap();
            assert_eq!(span.start, span.end, "{dotted}");
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            assert_eq!(&text[line_start..span.start], before, "{dotted}");
        }
        assert_eq!(value_text(text, &index, "top.after"), "1");
    }

    #[test]
    fn block_scalars_start_at_their_indicator() {
        let text = "script: |\n  echo one\n  echo two\n\nfolded: >-\n  a\n  b\nnext: 1\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "script"), "|\n  echo one\n  echo two");
        assert_eq!(index.value(&path("script")).unwrap().style, ScalarStyle::Literal);
        assert_eq!(value_text(text, &index, "folded"), ">-\n  a\n  b");
        assert_eq!(index.value(&path("folded")).unwrap().style, ScalarStyle::Folded);
        assert_eq!(index.scalar(&path("folded")), Some("a b"));
        assert_eq!(value_text(text, &index, "next"), "1");

        let text = "steps:\n- x\n- !!str |+ # keep\n\n  body\n- y\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "steps[1]"), "|+ # keep\n\n  body");
        assert_eq!(index.value(&path("steps[1]")).unwrap().line, 3);
        assert_eq!(value_text(text, &index, "steps"), "- x\n- !!str |+ # keep\n\n  body\n- y");
        let text = "quote: >\n  > not a header\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "quote"), ">\n  > not a header");
        let text = "--- >\n  folded root\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, ""), ">\n  folded root");
    }

    #[test]
    fn multi_line_scalars() {
        let text = "plain: first\n  second   \n  third  # c\ndq: \"one\n  two\"\nx: 1\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "plain"), "first\n  second   \n  third");
        assert_eq!(index.scalar(&path("plain")), Some("first second third"));
        assert_eq!(value_text(text, &index, "dq"), "\"one\n  two\"");
    }

    #[test]
    fn only_the_first_document_is_indexed() {
        let text = "---\n# ü\na: 1\n---\na: 2\nb: [unclosed\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(value_text(text, &index, "a"), "1");
        assert_eq!(index.value(&path("b")), None);
        let empty = SpanIndex::parse("# only a comment\n").unwrap();
        assert_eq!(empty.value(&YamlPath::root()), None);
        assert_eq!(empty.line_of(&path("a.b")), None);
    }

    #[test]
    fn root_sequences_and_scalars() {
        let text = "- a\n- [b, c]\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(index.sequence_len(&YamlPath::root()), Some(2));
        assert_eq!(value_text(text, &index, "[1][0]"), "b");
        assert_eq!(index.sequence_len(&path("[1][0]")), None);
        let scalar = SpanIndex::parse("--- 'just this'\n").unwrap();
        assert_eq!(scalar.scalar(&YamlPath::root()), Some("just this"));
    }

    #[test]
    fn line_of_finds_the_deepest_existing_node() {
        let text = "a:\n  b:\n    c: 1\n  list:\n    - x\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(index.line_of(&path("a.b.c")), Some(3));
        assert_eq!(index.line_of(&path("a.b.missing.deeper")), Some(2));
        assert_eq!(index.line_of(&path("a.list[7]")), Some(4));
        assert_eq!(index.line_of(&path("a.list[0]")), Some(5));
        assert_eq!(index.line_of(&path("zzz")), Some(1));
    }

    #[test]
    fn complex_keys_are_skipped() {
        let text = "? [a, b]\n: skipped\n'quoted key': 1\n\"k\\\\d\": 2\n1: one\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(index.mapping_len(&YamlPath::root()), Some(4));
        assert_eq!(key_text(text, &index, "\"quoted key\""), "'quoted key'");
        assert_eq!(value_text(text, &index, "\"k\\\\d\""), "2");
        assert_eq!(value_text(text, &index, "1"), "one");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let error = SpanIndex::parse("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(error, SpanError::DuplicateKey { path: path("b.c"), line: 4, column: 3 });
        let error = SpanIndex::parse("a: {x: 1}\na: [2]\n").unwrap_err();
        assert!(matches!(error, SpanError::DuplicateKey { ref path, line: 2, .. } if path.to_string() == "a"));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let error = SpanIndex::parse("# ü\nä: [1, 2\nb: 3\n").unwrap_err();
        let SpanError::Syntax { line, column, .. } = &error else {
            panic!("unexpected {error:?}");
        };
        assert_eq!((*line, *column), (3, 2));
        assert!(error.to_string().starts_with("parse yaml at line 3, column 2: "));
        let error = SpanIndex::parse("a: b: c\n").unwrap_err();
        assert!(matches!(error, SpanError::Syntax { line: 1, column: 5, .. }), "{error:?}");
    }
}
