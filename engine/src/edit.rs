//! Edits to YAML config files that change only the edited scalar.
//!
//! A promotion rewrites an image tag or digest in an environment's config repo and opens a pull
//! request; reviewers must see exactly the line that changed, with comments, quoting, anchors,
//! indentation and line endings untouched. No maintained Rust crate edits YAML that way, so
//! this module does it by hand: [`SpanIndex`] (built on the events and source markers of
//! `saphyr-parser`) gives the exact byte span of the scalar to change, the new value is
//! rendered in the same quoting style, and the text is spliced. Every edit is checked by
//! parsing the result again and reading the value back.

use std::fmt::Write as _;

use gantry_workflows::spans::{
    NodeKind, ScalarStyle, Segment, Span, SpanError, SpanIndex, YamlPath,
};

/// One change to a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the scalar at `path` with `value`.
    SetScalar {
        /// Where the scalar is.
        path: YamlPath,
        /// The new (decoded) value.
        value: String,
    },
    /// Pin an image in a kustomization's `images:` list (see [`set_kustomize_image`]).
    KustomizeImage {
        /// The entry's `name`.
        name: String,
        /// New value of `newTag`, if it should change.
        new_tag: Option<String>,
        /// New value of `digest`, if it should change.
        digest: Option<String>,
    },
}

/// Why an edit could not be made. Messages do not name the file; callers add that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The document is not valid YAML.
    #[error("parse yaml at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A mapping repeats a key, so the path is ambiguous.
    #[error("parse yaml: key `{path}` appears twice (second time at line {line})")]
    DuplicateKey {
        /// Path of the repeated entry.
        path: YamlPath,
        /// 1-based line of the second occurrence.
        line: usize,
    },
    /// Nothing exists at the path.
    #[error("find `{path}` in the document")]
    PathNotFound {
        /// The path that was asked for.
        path: YamlPath,
    },
    /// The path leads to a mapping or a sequence.
    #[error("set `{path}`: the value at line {line} is a {found}, not a scalar")]
    NotAScalar {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the value.
        line: usize,
        /// `mapping` or `sequence`.
        found: &'static str,
    },
    /// The value is a `|` or `>` block scalar, which is never rewritten.
    #[error(
        "set `{path}`: the value at line {line} is a block scalar (`|` or `>`), which is not edited"
    )]
    BlockScalar {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the block scalar's header.
        line: usize,
    },
    /// The value is an alias, or the path runs through one: changing it means changing the
    /// anchored node, which other places may share.
    #[error(
        "set `{path}`: the value comes from the alias at line {line}{}",
        anchored.as_ref().map(|anchored| format!("; edit the anchored node `{anchored}` instead")).unwrap_or_default()
    )]
    BehindAlias {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the alias.
        line: usize,
        /// Where the anchored node is, when it can be addressed.
        anchored: Option<YamlPath>,
    },
    /// The key is not written in its mapping but may come from a `<<` merge.
    #[error(
        "set `{path}`: the key is not written there and may be merged in by the `<<` at line {line}"
    )]
    MergeKey {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the `<<` key.
        line: usize,
    },
    /// A path that should hold a sequence holds something else.
    #[error("read `{path}`: the value at line {line} is not a sequence")]
    NotASequence {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the value.
        line: usize,
    },
    /// No entry of `images:` has this `name`.
    #[error("find image `{name}` in the kustomization's images")]
    ImageNotFound {
        /// The name that was asked for.
        name: String,
    },
    /// Several entries of `images:` have this `name`.
    #[error("pick image `{name}`: {count} entries of the kustomization's images have that name")]
    AmbiguousImage {
        /// The name that was asked for.
        name: String,
        /// How many entries have it.
        count: usize,
    },
    /// Neither `newTag` nor `digest` was given.
    #[error("update image `{name}`: neither a new tag nor a digest was given")]
    NothingToSet {
        /// The name that was asked for.
        name: String,
    },
    /// The entry is written in a way a field cannot be added to without restyling it.
    #[error("add `{path}`: {reason} (line {line})")]
    CannotInsert {
        /// Path of the field to add.
        path: YamlPath,
        /// 1-based line of the entry.
        line: usize,
        /// What is in the way.
        reason: &'static str,
    },
    /// The edited text did not read back as intended; the edit was not applied.
    #[error("set `{path}`: the edited document does not read back the new value ({reason})")]
    ReadBack {
        /// The path that was edited.
        path: YamlPath,
        /// What was found instead.
        reason: String,
    },
}

impl From<SpanError> for EditError {
    fn from(error: SpanError) -> Self {
        match error {
            SpanError::Syntax {
                line,
                column,
                message,
            } => Self::Syntax {
                line,
                column,
                message,
            },
            SpanError::DuplicateKey { path, line, .. } => Self::DuplicateKey { path, line },
        }
    }
}

/// Applies `edits` in order; each one sees the result of the one before.
///
/// # Errors
/// Returns the first edit's error; no partial result is returned.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, EditError> {
    let mut current = text.to_owned();
    for edit in edits {
        current = match edit {
            Edit::SetScalar { path, value } => set_scalar(&current, path, value)?,
            Edit::KustomizeImage {
                name,
                new_tag,
                digest,
            } => set_kustomize_image(&current, name, new_tag.as_deref(), digest.as_deref())?,
        };
    }
    Ok(current)
}

/// Sets the scalar at `path` to `value`, changing only that scalar's text.
///
/// The quoting style is kept: a plain scalar stays plain when `value` reads back as the same
/// string (otherwise it gets double quotes, so that `1.20` stays a string and not a number), a
/// single-quoted one stays single-quoted unless `value` holds a line break, and a
/// double-quoted one stays double-quoted. An anchor or tag in front of the scalar stays. When
/// the scalar already holds `value`, the text comes back unchanged.
///
/// # Errors
/// [`EditError::PathNotFound`], [`EditError::NotAScalar`], [`EditError::BlockScalar`],
/// [`EditError::BehindAlias`], [`EditError::MergeKey`], or a parse error.
pub fn set_scalar(text: &str, path: &YamlPath, value: &str) -> Result<String, EditError> {
    let index = SpanIndex::parse(text)?;
    set_scalar_in(text, &index, path, value)
}

/// In a kustomization's `images:` list, the entry whose `name` equals `name`: set `newTag`
/// (and/or `digest`).
///
/// If the entry lacks the field, one line `newTag: <v>` is inserted right after the entry's
/// `name:` line with the same indentation (block style), or `, newTag: v` right after the name
/// inside a flow mapping. A missing `digest` goes after `newTag` when there is one, else after
/// `name`.
///
/// # Errors
/// [`EditError::NothingToSet`], [`EditError::ImageNotFound`], [`EditError::AmbiguousImage`],
/// [`EditError::NotASequence`], [`EditError::CannotInsert`], or any error of [`set_scalar`].
pub fn set_kustomize_image(
    text: &str,
    name: &str,
    new_tag: Option<&str>,
    digest: Option<&str>,
) -> Result<String, EditError> {
    if new_tag.is_none() && digest.is_none() {
        return Err(EditError::NothingToSet {
            name: name.to_owned(),
        });
    }
    let mut current = text.to_owned();
    for (field, value, after) in [
        ("newTag", new_tag, &["name"][..]),
        ("digest", digest, &["newTag", "name"][..]),
    ] {
        let Some(value) = value else { continue };
        let index = SpanIndex::parse(&current)?;
        let entry = find_image(&index, name)?;
        let field_path = entry.clone().with_key(field);
        current = if index.kind(&field_path).is_some() {
            set_scalar_in(&current, &index, &field_path, value)?
        } else {
            let anchor = after
                .iter()
                .map(|key| entry.clone().with_key(*key))
                .find(|path| index.kind(path).is_some())
                .unwrap_or_else(|| entry.clone().with_key("name"));
            insert_field(&current, &index, &entry, &anchor, field, value)?
        };
    }
    Ok(current)
}

fn set_scalar_in(
    text: &str,
    index: &SpanIndex,
    path: &YamlPath,
    value: &str,
) -> Result<String, EditError> {
    let span = *locate_scalar(index, path)?;
    if index.scalar(path) == Some(value) {
        return Ok(text.to_owned());
    }
    let in_flow = index.is_flow(path).unwrap_or(false);
    let mut rendered = render(value, span.style, in_flow);
    // An empty value (`key:`) has no token; keep a blank between the indicator and the value.
    let after_indicator = span.start > 0
        && !matches!(
            text.as_bytes().get(span.start - 1),
            Some(b' ' | b'\t' | b'\n' | b'\r')
        );
    if span.start == span.end && after_indicator {
        rendered.insert(0, ' ');
    }
    let edited = splice(text, span.start, span.end, &rendered);
    read_back(&edited, path, value)?;
    Ok(edited)
}

/// The span of the editable scalar at `path`, or why there is none.
fn locate_scalar<'i>(index: &'i SpanIndex, path: &YamlPath) -> Result<&'i Span, EditError> {
    let Some(span) = index.value(path) else {
        return Err(missing(index, path));
    };
    match index.kind(path) {
        Some(NodeKind::Alias) => Err(EditError::BehindAlias {
            path: path.clone(),
            line: span.line,
            anchored: index.alias_target(path).cloned(),
        }),
        Some(NodeKind::Mapping) => Err(EditError::NotAScalar {
            path: path.clone(),
            line: span.line,
            found: "mapping",
        }),
        Some(NodeKind::Sequence) => Err(EditError::NotAScalar {
            path: path.clone(),
            line: span.line,
            found: "sequence",
        }),
        Some(NodeKind::Scalar) | None => match span.style {
            ScalarStyle::Literal | ScalarStyle::Folded => Err(EditError::BlockScalar {
                path: path.clone(),
                line: span.line,
            }),
            _ => Ok(span),
        },
    }
}

/// Explains a path with no node: it runs through an alias, may come from a merge, or is
/// simply absent.
fn missing(index: &SpanIndex, path: &YamlPath) -> EditError {
    for depth in (0..path.0.len()).rev() {
        let prefix = YamlPath(path.0[..depth].to_vec());
        let Some(kind) = index.kind(&prefix) else {
            continue;
        };
        if kind == NodeKind::Alias {
            return EditError::BehindAlias {
                path: path.clone(),
                line: index.value(&prefix).map_or(0, |span| span.line),
                anchored: index.alias_target(&prefix).cloned(),
            };
        }
        let merge = prefix.clone().with_key("<<");
        if kind == NodeKind::Mapping
            && matches!(path.0.get(depth), Some(Segment::Key(_)))
            && let Some(merge_key) = index.key(&merge)
        {
            return EditError::MergeKey {
                path: path.clone(),
                line: merge_key.line,
            };
        }
        break;
    }
    EditError::PathNotFound { path: path.clone() }
}

/// Path of the `images:` entry named `name`.
fn find_image(index: &SpanIndex, name: &str) -> Result<YamlPath, EditError> {
    let images = YamlPath::root().with_key("images");
    let not_found = || EditError::ImageNotFound {
        name: name.to_owned(),
    };
    let Some(len) = index.sequence_len(&images) else {
        return match index.value(&images) {
            Some(span) => Err(EditError::NotASequence {
                path: images,
                line: span.line,
            }),
            None => Err(not_found()),
        };
    };
    let mut matches: Vec<YamlPath> = (0..len)
        .map(|i| images.clone().with_index(i))
        .filter(|entry| {
            index.kind(entry) == Some(NodeKind::Mapping)
                && index.scalar(&entry.clone().with_key("name")) == Some(name)
        })
        .collect();
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.remove(0)),
        count => Err(EditError::AmbiguousImage {
            name: name.to_owned(),
            count,
        }),
    }
}

/// Adds `field: value` to the mapping at `entry`, right after the entry at `anchor`.
fn insert_field(
    text: &str,
    index: &SpanIndex,
    entry: &YamlPath,
    anchor: &YamlPath,
    field: &str,
    value: &str,
) -> Result<String, EditError> {
    let field_path = entry.clone().with_key(field);
    let (Some(entry_span), Some(anchor_key), Some(anchor_value)) =
        (index.value(entry), index.key(anchor), index.value(anchor))
    else {
        return Err(EditError::PathNotFound {
            path: anchor.clone(),
        });
    };
    let cannot = |reason| EditError::CannotInsert {
        path: field_path.clone(),
        line: entry_span.line,
        reason,
    };
    let edited = if index.is_flow(entry) == Some(true) {
        // Only a braced mapping can take another entry; `[name: x]` is a one-pair mapping
        // that a `,` would turn into a second sequence item.
        if !text[entry_span.range()].starts_with('{') {
            return Err(cannot(
                "the entry is a single-pair flow mapping without braces",
            ));
        }
        let rendered = render(value, ScalarStyle::Plain, true);
        let insertion = format!(", {field}: {rendered}");
        splice(text, anchor_value.end, anchor_value.end, &insertion)
    } else {
        // The anchor's key column is where every key of this block mapping starts.
        let line_start = text[..anchor_key.start].rfind('\n').map_or(0, |i| i + 1);
        if text[line_start..anchor_key.start].contains('\t') {
            return Err(cannot("the entry's line is indented with tabs"));
        }
        let indent = " ".repeat(anchor_key.column - 1);
        let rendered = render(value, ScalarStyle::Plain, false);
        match text[anchor_value.end..].find('\n') {
            Some(offset) => {
                let at = anchor_value.end + offset + 1;
                let eol = if text[..at].ends_with("\r\n") {
                    "\r\n"
                } else {
                    "\n"
                };
                splice(text, at, at, &format!("{indent}{field}: {rendered}{eol}"))
            }
            None => {
                let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
                let at = text.len();
                splice(text, at, at, &format!("{eol}{indent}{field}: {rendered}"))
            }
        }
    };
    read_back(&edited, &field_path, value)?;
    Ok(edited)
}

fn splice(text: &str, start: usize, end: usize, replacement: &str) -> String {
    let mut edited = String::with_capacity(text.len() + replacement.len());
    edited.push_str(&text[..start]);
    edited.push_str(replacement);
    edited.push_str(&text[end..]);
    edited
}

/// Parses the edited text and checks that `path` now holds `value`.
fn read_back(edited: &str, path: &YamlPath, value: &str) -> Result<(), EditError> {
    let fail = |reason: String| EditError::ReadBack {
        path: path.clone(),
        reason,
    };
    let index = SpanIndex::parse(edited).map_err(|error| fail(error.to_string()))?;
    match index.scalar(path) {
        Some(found) if found == value => Ok(()),
        Some(found) => Err(fail(format!("found {found:?}"))),
        None => Err(fail("no scalar there".to_owned())),
    }
}

/// The source text for `value` in (as far as possible) `style`.
fn render(value: &str, style: ScalarStyle, in_flow: bool) -> String {
    match style {
        ScalarStyle::Plain if plain_is_safe(value, in_flow) => value.to_owned(),
        ScalarStyle::SingleQuoted if single_quotes_can_hold(value) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => double_quoted(value),
    }
}

/// Whether `value` written without quotes reads back as the same string, under both YAML 1.2
/// and the YAML 1.1 rules that Kubernetes tooling still applies (`yes`, `0755`, `1:30`).
fn plain_is_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    let ends_in_blank = value.ends_with([' ', '\t']);
    if ends_in_blank || "-?:,[]{}#&*!|>'\"%@` \t".contains(first) {
        return false;
    }
    let awkward_char = |c: char| {
        !is_printable(c)
            || matches!(
                c,
                '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
            )
    };
    if value.chars().any(awkward_char) {
        return false;
    }
    if value.contains(": ") || value.contains(" #") || value.ends_with(':') {
        return false;
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    if value.starts_with("...") {
        return false;
    }
    !resolves_to_non_string(value)
}

/// Whether a plain scalar would be read as null, a boolean, a number or a timestamp.
fn resolves_to_non_string(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y",
        "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
        "<<", "=",
    ];
    if WORDS.contains(&value) {
        return true;
    }
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(value, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    is_integer(unsigned) || is_float(unsigned) || is_sexagesimal(unsigned) || is_date(value)
}

/// `0x1F`, `0o17`, `0b101`, `0755`, `1_000` (sign already removed).
fn is_integer(s: &str) -> bool {
    let digits_of = |rest: &str, radix: u32| {
        rest.chars().any(|c| c.is_digit(radix))
            && rest.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    if let Some(rest) = s.strip_prefix("0x") {
        return digits_of(rest, 16);
    }
    if let Some(rest) = s.strip_prefix("0o") {
        return digits_of(rest, 8);
    }
    if let Some(rest) = s.strip_prefix("0b") {
        return digits_of(rest, 2);
    }
    digits_of(s, 10)
}

/// `1.5`, `.5`, `1.`, `1e3`, `1_000.5E-3` (sign already removed); not `1.2.3`.
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit() || c == '_');
    let mantissa_ok = digits(whole)
        && fraction.is_none_or(digits)
        && mantissa.chars().any(|c| c.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|exponent| {
        let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok && (fraction.is_some() || exponent.is_some())
}

/// YAML 1.1 base-60 numbers such as `1:30` or `190:20:30.15` (sign already removed).
fn is_sexagesimal(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.contains(':')
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '_' | ':' | '.'))
}

/// Starts like a YAML 1.1 timestamp: `2024-01-15`, `2024-1-5T10:00:00Z`.
fn is_date(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(year), Some(month), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let all_digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    year.len() == 4
        && all_digits(year)
        && (1..=2).contains(&month.len())
        && all_digits(month)
        && (1..=2).contains(&day.len())
}

/// YAML's printable characters (`c-printable`).
fn is_printable(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

/// Single quotes cannot escape anything but `'`, and fold line breaks.
fn single_quotes_can_hold(value: &str) -> bool {
    value.chars().all(|c| {
        is_printable(c)
            && !matches!(
                c,
                '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
            )
    })
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            '\u{feff}' => out.push_str("\\uFEFF"),
            c if !is_printable(c) => {
                let code = u32::from(c);
                // Writing to a `String` cannot fail.
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02X}")
                } else {
                    write!(out, "\\u{code:04X}")
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "ghcr.io/acme/checkout-api";
    const WORKER: &str = "ghcr.io/acme/checkout-worker";
    const NEW_DIGEST: &str =
        "sha256:6f11ad3c9450922f7ebcdf5a010fd54f42c9bff1dc1be8b9cfb0b7e0f25f560a";
    const FIXTURES: &[&str] = &[
        "kustomization.yaml",
        "kustomization-odd-indent.yaml",
        "values.yaml",
        "odd-indent.yaml",
        "flow.yaml",
        "crlf.yaml",
        "multi-document.yaml",
    ];

    fn fixture(name: &str) -> String {
        let file = format!(
            "{}/../tests/fixtures/edit/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("read {file}: {error}"))
    }

    fn path(dotted: &str) -> YamlPath {
        YamlPath::parse(dotted).unwrap()
    }

    /// Lines with their endings, so that a changed line ending counts as a change.
    fn lines(text: &str) -> Vec<&str> {
        text.split_inclusive('\n').collect()
    }

    /// Asserts that `after` differs from `before` in exactly the given 1-based lines, and
    /// returns those lines of `after`.
    fn assert_changed_lines<'a>(before: &str, after: &'a str, expected: &[usize]) -> Vec<&'a str> {
        let (old, new) = (lines(before), lines(after));
        assert_eq!(old.len(), new.len(), "line count changed:\n{after}");
        let changed: Vec<usize> = (0..old.len())
            .filter(|&i| old[i] != new[i])
            .map(|i| i + 1)
            .collect();
        assert_eq!(changed, expected, "changed lines of:\n{after}");
        expected.iter().map(|line| new[line - 1]).collect()
    }

    /// Asserts that `after` is `before` plus exactly one line inserted as 1-based line `at`,
    /// and returns the inserted line.
    fn assert_inserted_line<'a>(before: &str, after: &'a str, at: usize) -> &'a str {
        let (old, new) = (lines(before), lines(after));
        assert_eq!(old.len() + 1, new.len(), "expected one more line:\n{after}");
        assert_eq!(
            old[..at - 1],
            new[..at - 1],
            "lines before {at} changed:\n{after}"
        );
        assert_eq!(
            old[at - 1..],
            new[at..],
            "lines after {at} changed:\n{after}"
        );
        new[at - 1]
    }

    /// Every scalar that `set_scalar` may edit, with its decoded value.
    fn editable_scalars(text: &str) -> Vec<(YamlPath, String)> {
        let index = SpanIndex::parse(text).unwrap();
        let mut scalars: Vec<(YamlPath, String)> = index
            .paths()
            .filter(|path| locate_scalar(&index, path).is_ok())
            .map(|path| (path.clone(), index.scalar(path).unwrap().to_owned()))
            .collect();
        scalars.sort_by_key(|(path, _)| path.to_string());
        scalars
    }

    #[test]
    fn kustomization_quoted_tag_stays_quoted() {
        let text = fixture("kustomization.yaml");
        let edited = set_kustomize_image(&text, API, Some("1.42.0"), None).unwrap();
        let changed = assert_changed_lines(&text, &edited, &[22]);
        assert_eq!(changed, ["    newTag: \"1.42.0\"   # pinned by gantry\n"]);
        insta::assert_snapshot!("kustomization_quoted_tag", edited);
    }

    #[test]
    fn kustomization_plain_tag_stays_plain_unless_it_would_read_as_a_number() {
        let text = fixture("kustomization.yaml");
        let edited = set_kustomize_image(&text, WORKER, Some("v1.42.0"), None).unwrap();
        assert_eq!(
            assert_changed_lines(&text, &edited, &[25]),
            ["    newTag: v1.42.0\n"]
        );
        let edited = set_kustomize_image(&text, WORKER, Some("1.50"), None).unwrap();
        assert_eq!(
            assert_changed_lines(&text, &edited, &[25]),
            ["    newTag: \"1.50\"\n"]
        );
    }

    #[test]
    fn kustomization_digest_is_replaced() {
        let text = fixture("kustomization.yaml");
        let name = "ghcr.io/acme/checkout-migrations";
        let edited = set_kustomize_image(&text, name, None, Some(NEW_DIGEST)).unwrap();
        let changed = assert_changed_lines(&text, &edited, &[27]);
        assert_eq!(changed, [format!("    digest: {NEW_DIGEST}\n")]);
        insta::assert_snapshot!("kustomization_digest", edited);
    }

    #[test]
    fn kustomization_missing_tag_is_inserted_after_name() {
        let text = fixture("kustomization.yaml");
        let envoy = "docker.io/envoyproxy/envoy";
        let edited = set_kustomize_image(&text, envoy, Some("v1.31.2"), None).unwrap();
        assert_eq!(
            assert_inserted_line(&text, &edited, 31),
            "    newTag: v1.31.2\n"
        );
        insta::assert_snapshot!("kustomization_inserted_tag", edited);

        let both = set_kustomize_image(&text, envoy, Some("v1.31.2"), Some(NEW_DIGEST)).unwrap();
        assert_eq!(
            assert_inserted_line(&edited, &both, 32),
            format!("    digest: {NEW_DIGEST}\n")
        );
    }

    #[test]
    fn kustomization_image_errors() {
        let text = fixture("kustomization.yaml");
        assert_eq!(
            set_kustomize_image(&text, "ghcr.io/acme/unknown", Some("1"), None),
            Err(EditError::ImageNotFound {
                name: "ghcr.io/acme/unknown".into()
            })
        );
        assert_eq!(
            set_kustomize_image(&text, API, None, None),
            Err(EditError::NothingToSet { name: API.into() })
        );
        let twice = "images:\n- name: app\n  newTag: a\n- {name: app}\n";
        assert_eq!(
            set_kustomize_image(twice, "app", Some("b"), None),
            Err(EditError::AmbiguousImage {
                name: "app".into(),
                count: 2
            })
        );
        let not_a_list = "images:\n  name: app\n";
        assert_eq!(
            set_kustomize_image(not_a_list, "app", Some("b"), None),
            Err(EditError::NotASequence {
                path: path("images"),
                line: 2
            })
        );
        assert_eq!(
            set_kustomize_image("resources: []\n", "app", Some("b"), None),
            Err(EditError::ImageNotFound { name: "app".into() })
        );
        let unbraced = "images: [name: app]\n";
        assert!(matches!(
            set_kustomize_image(unbraced, "app", Some("b"), None),
            Err(EditError::CannotInsert { line: 1, .. })
        ));
    }

    #[test]
    fn kustomization_with_odd_indentation() {
        let text = fixture("kustomization-odd-indent.yaml");
        let edited = set_kustomize_image(&text, WORKER, Some("v1.42.0"), None).unwrap();
        assert_eq!(
            assert_inserted_line(&text, &edited, 7),
            "     newTag: v1.42.0\n"
        );
        let cron = "ghcr.io/acme/checkout-cron";
        let edited = set_kustomize_image(&edited, cron, Some("2024-06-01"), None).unwrap();
        assert!(
            edited.ends_with("-   name: ghcr.io/acme/checkout-cron\n    newTag: \"2024-06-01\"\n")
        );
        let edited = set_kustomize_image(&edited, API, Some("1.42.0"), None).unwrap();
        insta::assert_snapshot!("kustomization_odd_indent", edited);
    }

    #[test]
    fn insertion_at_the_end_of_a_file_without_final_newline() {
        let text = "images:\n  - name: app\n    newName: other";
        let edited = set_kustomize_image(text, "app", Some("v2"), None).unwrap();
        assert_eq!(
            edited,
            "images:\n  - name: app\n    newTag: v2\n    newName: other"
        );
        let text = "images:\r\n  - name: app";
        let edited = set_kustomize_image(text, "app", Some("v2"), None).unwrap();
        assert_eq!(edited, "images:\r\n  - name: app\r\n    newTag: v2");
    }

    #[test]
    fn values_single_quoted_tag_stays_single_quoted() {
        let text = fixture("values.yaml");
        let edited = set_scalar(&text, &path("image.tag"), "1.42.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[10]);
        assert_eq!(changed, ["  tag: '1.42.0'          # set on promotion\n"]);
        insta::assert_snapshot!("values_single_quoted_tag", edited);

        let edited = set_scalar(&text, &path("image.tag"), "it's").unwrap();
        assert!(edited.contains("  tag: 'it''s'  "));
        // Single quotes cannot hold a line break, so the value moves to double quotes.
        let edited = set_scalar(&text, &path("image.tag"), "a\nb").unwrap();
        assert!(edited.contains("  tag: \"a\\nb\"  "));
    }

    #[test]
    fn values_anchored_scalar_keeps_its_anchor() {
        let text = fixture("values.yaml");
        let edited = set_scalar(&text, &path("worker.image.tag"), "v1.42.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[16]);
        assert_eq!(changed, ["    tag: &workerTag v1.42.0\n"]);
        insta::assert_snapshot!("values_anchored_tag", edited);
    }

    #[test]
    fn values_empty_value_gets_filled() {
        let text = fixture("values.yaml");
        let edited = set_scalar(&text, &path("extraEnv[1].value"), "1.42.0").unwrap();
        assert_eq!(
            assert_changed_lines(&text, &edited, &[58]),
            ["    value: 1.42.0\n"]
        );
        let edited = set_scalar(&text, &path("extraEnv[1].value"), "true").unwrap();
        assert_eq!(
            assert_changed_lines(&text, &edited, &[58]),
            ["    value: \"true\"\n"]
        );
    }

    #[test]
    fn values_double_quoted_value_is_escaped() {
        let text = fixture("values.yaml");
        let value = "-Xmx1g -Dlabel=\"a\\b\"\t";
        let edited = set_scalar(&text, &path("extraEnv[0].value"), value).unwrap();
        let changed = assert_changed_lines(&text, &edited, &[56]);
        assert_eq!(
            changed,
            ["    value: \"-Xmx1g -Dlabel=\\\"a\\\\b\\\"\\t\"\n"]
        );
    }

    #[test]
    fn values_refusals() {
        let text = fixture("values.yaml");
        let cases = [
            "migrations.image.tag",
            "sidecar.resources.limits.cpu",
            "canary.nodeSelector",
            "resources",
            "extraEnv",
            "nginxConfig",
            "image.digest",
            "image.tag.deeper",
        ];
        let mut report = String::new();
        for dotted in cases {
            let error = set_scalar(&text, &path(dotted), "x").unwrap_err();
            writeln!(report, "{dotted}: failed to {error}").unwrap();
        }
        insta::assert_snapshot!("values_refusals", report);

        assert_eq!(
            set_scalar(&text, &path("migrations.image.tag"), "v2"),
            Err(EditError::BehindAlias {
                path: path("migrations.image.tag"),
                line: 23,
                anchored: Some(path("worker.image.tag")),
            })
        );
        assert_eq!(
            set_scalar(&text, &path("sidecar.resources.limits.cpu"), "1"),
            Err(EditError::BehindAlias {
                path: path("sidecar.resources.limits.cpu"),
                line: 46,
                anchored: Some(path("resources")),
            })
        );
        assert_eq!(
            set_scalar(&text, &path("canary.nodeSelector"), "x"),
            Err(EditError::MergeKey {
                path: path("canary.nodeSelector"),
                line: 33,
            })
        );
        assert!(matches!(
            set_scalar(&text, &path("resources"), "x"),
            Err(EditError::NotAScalar {
                line: 38,
                found: "mapping",
                ..
            })
        ));
        assert!(matches!(
            set_scalar(&text, &path("extraEnv"), "x"),
            Err(EditError::NotAScalar {
                line: 55,
                found: "sequence",
                ..
            })
        ));
        assert_eq!(
            set_scalar(&text, &path("nginxConfig"), "x"),
            Err(EditError::BlockScalar {
                path: path("nginxConfig"),
                line: 48
            })
        );
        assert_eq!(
            set_scalar(&text, &path("image.digest"), "x"),
            Err(EditError::PathNotFound {
                path: path("image.digest")
            })
        );
    }

    #[test]
    fn odd_indentation_and_flow_sequence_spacing() {
        let text = fixture("odd-indent.yaml");
        let image = path("spec.template.spec.containers[0].image");
        let edited = set_scalar(&text, &image, "ghcr.io/acme/checkout-api:1.42.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[13]);
        assert_eq!(
            changed,
            [
                "           image:    ghcr.io/acme/checkout-api:1.42.0     # rewritten on promotion\n"
            ]
        );
        let port = path("spec.template.spec.containers[0].args[1]");
        let edited = set_scalar(&edited, &port, "9090").unwrap();
        let proxy = path("spec.template.spec.containers[1].image");
        let edited = set_scalar(&edited, &proxy, "docker.io/istio/proxyv2:1.23.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[13, 14, 16]);
        assert_eq!(changed[1], "           args: [ \"--port\" ,   \"9090\" ]\n");
        assert_eq!(
            changed[2],
            "             image: \"docker.io/istio/proxyv2:1.23.0\"\n"
        );
        insta::assert_snapshot!("odd_indent", edited);
    }

    #[test]
    fn flow_style() {
        let text = fixture("flow.yaml");
        let edited = set_kustomize_image(&text, API, Some("1.42.0"), None).unwrap();
        let edited = set_kustomize_image(&edited, WORKER, None, Some(NEW_DIGEST)).unwrap();
        let envoy = "docker.io/envoyproxy/envoy";
        let edited = set_kustomize_image(&edited, envoy, Some("v1.31.2"), None).unwrap();
        let edited = set_scalar(&edited, &path("helm.image.tag"), "1.42.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[3, 5]);
        assert_eq!(
            changed[0],
            format!(
                "images: [{{name: {API}, newTag: 1.42.0}}, {{name: {WORKER}, digest: '{NEW_DIGEST}'}}, {{name: {envoy}, newTag: v1.31.2}}]\n"
            )
        );
        insta::assert_snapshot!("flow", edited);

        // Flow indicators inside a plain value would end it early, so such a value is quoted.
        let edited = set_scalar(&text, &path("resources[0]"), "a,b").unwrap();
        assert!(edited.contains("resources: [\"a,b\", service.yaml]\n"));
        let edited = set_scalar(&text, &path("helm.extra[0]"), "sha256:abc").unwrap();
        assert!(edited.contains("extra: [sha256:abc, b]}"));
    }

    #[test]
    fn crlf_line_endings_are_kept() {
        let text = fixture("crlf.yaml");
        let tag = Edit::KustomizeImage {
            name: API.into(),
            new_tag: Some("1.42.0".into()),
            digest: None,
        };
        let tagged = apply(&text, std::slice::from_ref(&tag)).unwrap();
        assert_eq!(
            assert_changed_lines(&text, &tagged, &[6]),
            ["    newTag: 1.42.0 # pinned\r\n"]
        );
        let digest = Edit::KustomizeImage {
            name: WORKER.into(),
            new_tag: None,
            digest: Some(NEW_DIGEST.into()),
        };
        let edited = apply(&text, &[tag, digest]).unwrap();
        assert_eq!(
            assert_inserted_line(&tagged, &edited, 8),
            format!("    digest: {NEW_DIGEST}\r\n")
        );
        let edited = set_scalar(&edited, &path("image.tag"), "1.42.0").unwrap();
        assert_eq!(edited.matches("\r\n").count(), edited.matches('\n').count());
        assert_eq!(edited.matches('\n').count(), text.matches('\n').count() + 1);
        let edited_lines = lines(&edited);
        assert_eq!(edited_lines[5], "    newTag: 1.42.0 # pinned\r\n");
        assert_eq!(edited_lines[9], "  tag: \"1.42.0\"\r\n");
        insta::assert_snapshot!("crlf", edited);
    }

    #[test]
    fn only_the_first_document_is_edited() {
        let text = fixture("multi-document.yaml");
        let edited = set_scalar(&text, &path("image.tag"), "1.42.0").unwrap();
        assert_eq!(
            assert_changed_lines(&text, &edited, &[5]),
            ["  tag: 1.42.0\n"]
        );
        insta::assert_snapshot!("multi_document", edited);
    }

    #[test]
    fn no_edits_and_same_values_keep_every_byte() {
        for name in FIXTURES {
            let text = fixture(name);
            assert_eq!(apply(&text, &[]).unwrap(), text, "{name}");
            let scalars = editable_scalars(&text);
            assert!(!scalars.is_empty(), "{name}");
            for (path, value) in scalars {
                let same = set_scalar(&text, &path, &value).unwrap();
                assert!(
                    same == text,
                    "{name}: setting {path} to its value changed the text"
                );
            }
        }
        let text = fixture("kustomization.yaml");
        let same = set_kustomize_image(&text, API, Some("1.41.0"), None).unwrap();
        assert!(same == text);
    }

    /// Every editable scalar of every fixture, set to values that need different quoting:
    /// exactly the scalar's line changes and every other value reads back as before.
    #[test]
    fn every_scalar_edit_changes_one_line_and_nothing_else() {
        let values = ["v9.9.9", "1.50", "yes", "it's: #odd", "ünï \"q\"", ""];
        for name in FIXTURES {
            let text = fixture(name);
            let index = SpanIndex::parse(&text).unwrap();
            let before = editable_scalars(&text);
            for (path, current) in &before {
                let span = index.value(path).unwrap();
                if text[span.range()].contains('\n') {
                    continue;
                }
                for value in values.into_iter().filter(|value| value != current) {
                    let edited = set_scalar(&text, path, value).unwrap();
                    let changed = assert_changed_lines(&text, &edited, &[span.line]);
                    assert_ne!(changed[0], lines(&text)[span.line - 1]);
                    let after: Vec<(YamlPath, String)> = editable_scalars(&edited);
                    let expected: Vec<(YamlPath, String)> = before
                        .iter()
                        .map(|(other, old)| {
                            let new = if other == path { value } else { old.as_str() };
                            (other.clone(), new.to_owned())
                        })
                        .collect();
                    assert_eq!(after, expected, "{name}: {path} = {value:?}");
                }
            }
        }
    }

    #[test]
    fn syntax_and_duplicate_key_errors() {
        let error = set_scalar("a: [1, 2\nb: 3\n", &path("a"), "x").unwrap_err();
        let EditError::Syntax {
            line,
            column,
            message,
        } = &error
        else {
            panic!("unexpected {error:?}");
        };
        assert_eq!((*line, *column), (2, 2));
        assert!(!message.is_empty());
        assert_eq!(
            set_scalar("a: 1\na: 2\n", &path("a"), "x"),
            Err(EditError::DuplicateKey {
                path: path("a"),
                line: 2
            })
        );
    }

    #[test]
    fn plain_values_that_need_quotes() {
        for safe in [
            "1.2.3",
            "v1.2.3",
            "dev-sha-abc1234",
            "sha256:abc",
            "ghcr.io/acme/app:1.0",
            "a#b",
            "latest",
            "1.2.3-rc.1+build.5",
            "ünï",
            "0x",
            "1e",
            "2024-06",
        ] {
            assert!(plain_is_safe(safe, false), "{safe:?} should stay plain");
        }
        for unsafe_value in [
            "",
            "1",
            "-1",
            "+1",
            "1.20",
            ".5",
            "1.",
            "1e3",
            "6.02E+23",
            "0x1F",
            "0o17",
            "0b101",
            "0755",
            "1_000",
            "true",
            "True",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "null",
            "~",
            ".inf",
            "-.Inf",
            ".nan",
            "1:30",
            "2024-01-15",
            "2024-1-5T10:00:00Z",
            "a: b",
            "a #b",
            "a:",
            "-x",
            "?x",
            ":x",
            "*x",
            "&x",
            "!x",
            "'x",
            "\"x",
            "#x",
            "%x",
            "@x",
            "`x",
            "|x",
            ">x",
            "[x",
            "]x",
            "{x",
            "}x",
            ",x",
            " x",
            "x ",
            "a\tb",
            "a\nb",
            "...x",
            "<<",
            "=",
            "\u{feff}x",
            "a\u{1}b",
        ] {
            assert!(
                !plain_is_safe(unsafe_value, false),
                "{unsafe_value:?} must be quoted"
            );
        }
        for flow_unsafe in ["a,b", "a[b", "a]", "a{b", "a}"] {
            assert!(
                plain_is_safe(flow_unsafe, false),
                "{flow_unsafe:?} is fine in block"
            );
            assert!(
                !plain_is_safe(flow_unsafe, true),
                "{flow_unsafe:?} must be quoted in flow"
            );
        }
    }

    #[test]
    fn double_quoting_escapes() {
        assert_eq!(
            double_quoted("a\"b\\c\n\t\r\0\u{1}\u{7f}\u{85}\u{2028}\u{feff}\u{fffe}é✓"),
            "\"a\\\"b\\\\c\\n\\t\\r\\0\\x01\\x7F\\N\\L\\uFEFF\\uFFFEé✓\""
        );
        // Every escape reads back as the original value.
        let text = "k: \"old\"\n";
        let value = "a\"b\\c\n\t\r\0\u{1}\u{7f}\u{85}\u{2028}\u{feff}\u{fffe}é✓";
        let edited = set_scalar(text, &path("k"), value).unwrap();
        assert_eq!(
            SpanIndex::parse(&edited).unwrap().scalar(&path("k")),
            Some(value)
        );
    }
}
