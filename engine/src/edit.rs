//! Edits to YAML and JSON config files that change only the edited scalar.
//!
//! A promotion rewrites an image tag or digest in an environment's config repo and opens a pull
//! request; reviewers must see exactly the line that changed, with comments, quoting, anchors,
//! indentation and line endings untouched. No maintained Rust crate edits YAML that way, so
//! this module does it by hand: [`SpanIndex`] (built on the events and source markers of
//! `saphyr-parser`) gives the exact byte span of the scalar to change, the new value is
//! rendered in the same quoting style, and the text is spliced. Every edit is checked by
//! parsing the result again and reading the value back.
//!
//! JSON files get the same guarantees through a small indexer of their own (`json`), since
//! the YAML renderer's quoting styles and escapes are not JSON. [`Format::from_path`] picks
//! the syntax by file name and [`apply_format`] applies any list of [`Edit`]s in either.

mod json;

use std::fmt::Write as _;
use std::path::Path;

use gantry_workflows::spans::{NodeKind, ScalarStyle, Segment, Span, SpanError, SpanIndex, YamlPath};

/// One change to a YAML or JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the scalar at `path` with the string `value` (see [`set_scalar`]).
    SetScalar {
        /// Where the scalar is.
        path: YamlPath,
        /// The new (decoded) value.
        value: String,
    },
    /// Replace the scalar at `path` with `value`, keeping a number, boolean or null a number,
    /// boolean or null when `value` reads as one too (see [`set_value`]).
    SetValue {
        /// Where the scalar is.
        path: YamlPath,
        /// The new value as it would be typed.
        value: String,
    },
    /// Pin the image of a Helm values mapping such as `image:` (see [`set_helm_image`]).
    HelmImage {
        /// The mapping holding `repository`, `tag` and `digest`, e.g. `image`.
        path: YamlPath,
        /// New value of `tag`, if it should change.
        tag: Option<String>,
        /// New value of `digest`, if it should change.
        digest: Option<String>,
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
    /// The document is not valid JSON.
    #[error("parse json at line {line}, column {column}: {message}")]
    JsonSyntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A path that should hold a mapping (an image's fields) holds something else.
    #[error("read `{path}`: the value at line {line} is not a mapping")]
    NotAMapping {
        /// The path that was asked for.
        path: YamlPath,
        /// 1-based line of the value.
        line: usize,
    },
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
    #[error("set `{path}`: the value at line {line} is a block scalar (`|` or `>`), which is not edited")]
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
    #[error("set `{path}`: the key is not written there and may be merged in by the `<<` at line {line}")]
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
            SpanError::Syntax { line, column, message } => Self::Syntax { line, column, message },
            SpanError::DuplicateKey { path, line, .. } => Self::DuplicateKey { path, line },
        }
    }
}

/// The syntax of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (also the default for unknown extensions: kustomizations, Helm values).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// `Json` for a `.json` file name (any case), `Yaml` otherwise.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|extension| extension.to_str()) {
            Some(extension) if extension.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Applies `edits` to a YAML document in order; each one sees the result of the one before.
///
/// # Errors
/// Returns the first edit's error; no partial result is returned.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, EditError> {
    apply_format(Format::Yaml, text, edits)
}

/// Applies `edits` to a document in `format`, in order: several edits (the images of a
/// multi-artifact promotion, say) become one new text, and so one commit.
///
/// # Errors
/// Returns the first edit's error; no partial result is returned.
pub fn apply_format(format: Format, text: &str, edits: &[Edit]) -> Result<String, EditError> {
    let mut current = text.to_owned();
    for edit in edits {
        current = match (format, edit) {
            (Format::Yaml, Edit::SetScalar { path, value }) => set_scalar(&current, path, value)?,
            (Format::Yaml, Edit::SetValue { path, value }) => set_value(&current, path, value)?,
            (Format::Yaml, Edit::KustomizeImage { name, new_tag, digest }) => {
                set_kustomize_image(&current, name, new_tag.as_deref(), digest.as_deref())?
            }
            (Format::Yaml, Edit::HelmImage { path, tag, digest }) => {
                set_helm_image(&current, path, tag.as_deref(), digest.as_deref())?
            }
            (Format::Json, edit) => json_apply(&current, edit)?,
        };
    }
    Ok(current)
}

/// Where a promotion pins an image in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinLocation {
    /// A scalar holding the tag (Helm `image.tag`); a sibling `digest` is read too.
    Scalar(YamlPath),
    /// A kustomization `images:` entry, by name (`newTag` and `digest`).
    KustomizeImage(String),
}

impl PinLocation {
    /// The edit that pins `tag` at this location.
    pub fn set_tag(&self, tag: &str) -> Edit {
        match self {
            PinLocation::Scalar(path) => Edit::SetScalar { path: path.clone(), value: tag.to_owned() },
            PinLocation::KustomizeImage(name) => {
                Edit::KustomizeImage { name: name.clone(), new_tag: Some(tag.to_owned()), digest: None }
            }
        }
    }
}

/// The tag and digest a file pins an image to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pinned {
    /// The tag, when the file names one.
    pub tag: Option<String>,
    /// The digest, when the file names one.
    pub digest: Option<String>,
}

/// Reads what `text` pins at `location` without changing anything (drift detection reads
/// thousands of files this way).
///
/// # Errors
/// A parse error, [`EditError::PathNotFound`] or [`EditError::NotAScalar`] for a scalar
/// location, or the errors of finding a kustomization image.
pub fn read_pin(format: Format, text: &str, location: &PinLocation) -> Result<Pinned, EditError> {
    // For `image.tag`, the digest is the sibling `image.digest`.
    let digest_sibling = |path: &YamlPath| match path.0.split_last() {
        Some((Segment::Key(key), parent)) if key == "tag" => Some(YamlPath(parent.to_vec()).with_key("digest")),
        _ => None,
    };
    match format {
        Format::Yaml => {
            let index = SpanIndex::parse(text)?;
            match location {
                PinLocation::Scalar(path) => {
                    locate_scalar(&index, path)?;
                    Ok(Pinned {
                        tag: index.scalar(path).map(str::to_owned),
                        digest: digest_sibling(path).and_then(|sibling| index.scalar(&sibling).map(str::to_owned)),
                    })
                }
                PinLocation::KustomizeImage(name) => {
                    let entry = find_image(&index, name)?;
                    let field = |key: &str| index.scalar(&entry.clone().with_key(key)).map(str::to_owned);
                    Ok(Pinned { tag: field("newTag"), digest: field("digest") })
                }
            }
        }
        Format::Json => {
            let index = json_index(text)?;
            let scalar = |path: &YamlPath| {
                index
                    .get(path)
                    .filter(|node| !matches!(node.kind, json::JsonKind::Object | json::JsonKind::Array))
                    .and_then(|node| node.scalar.clone())
            };
            match location {
                PinLocation::Scalar(path) => {
                    let tag = scalar(path).ok_or_else(|| EditError::PathNotFound { path: path.clone() })?;
                    Ok(Pinned { tag: Some(tag), digest: digest_sibling(path).and_then(|sibling| scalar(&sibling)) })
                }
                PinLocation::KustomizeImage(name) => {
                    let entry = json_find_image(&index, name)?;
                    Ok(Pinned {
                        tag: scalar(&entry.clone().with_key("newTag")),
                        digest: scalar(&entry.with_key("digest")),
                    })
                }
            }
        }
    }
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
    set_scalar_in(text, &index, path, value, false)
}

/// Like [`set_scalar`], but for values typed by a person (`gantry edit --set replicas=3`): when
/// the scalar is plain and reads as a number, boolean or null, and `value` does too, `value`
/// is written plain, so `replicas: 2` becomes `replicas: 3` rather than `replicas: "3"`.
///
/// # Errors
/// The errors of [`set_scalar`].
pub fn set_value(text: &str, path: &YamlPath, value: &str) -> Result<String, EditError> {
    let index = SpanIndex::parse(text)?;
    set_scalar_in(text, &index, path, value, true)
}

/// In the Helm values mapping at `path` (usually `image`), sets `tag` and/or `digest`.
///
/// A missing `tag` is inserted after `repository`; a missing `digest` after `tag`, else after
/// `repository`, as one line with the mapping's indentation (or `, digest: v` in a flow
/// mapping), so a chart that renders `{{ .Values.image.repository }}@{{ .Values.image.digest }}`
/// gets pinned by digest with a one-line diff.
///
/// # Errors
/// [`EditError::NothingToSet`], [`EditError::NotAMapping`], [`EditError::CannotInsert`] (the
/// mapping has neither key to insert after), or any error of [`set_scalar`].
pub fn set_helm_image(
    text: &str,
    path: &YamlPath,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<String, EditError> {
    if tag.is_none() && digest.is_none() {
        return Err(EditError::NothingToSet { name: path.to_string() });
    }
    let entry_of = |index: &SpanIndex| match index.kind(path) {
        Some(NodeKind::Mapping) => Ok(path.clone()),
        Some(_) => {
            Err(EditError::NotAMapping { path: path.clone(), line: index.value(path).map_or(0, |span| span.line) })
        }
        None => Err(missing(index, path)),
    };
    set_fields(text, entry_of, &[("tag", tag, &["repository"]), ("digest", digest, &["tag", "repository"])])
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
        return Err(EditError::NothingToSet { name: name.to_owned() });
    }
    set_fields(
        text,
        |index| find_image(index, name),
        &[("newTag", new_tag, &["name"]), ("digest", digest, &["newTag", "name"])],
    )
}

/// A field to set in a mapping: name, new value (skipped when `None`), and the keys after
/// which to insert it when it is missing, in order of preference.
type FieldEdit<'a> = (&'a str, Option<&'a str>, &'a [&'a str]);

/// Sets fields of the mapping that `entry_of` finds, inserting missing ones.
fn set_fields(
    text: &str,
    entry_of: impl Fn(&SpanIndex) -> Result<YamlPath, EditError>,
    fields: &[FieldEdit<'_>],
) -> Result<String, EditError> {
    let mut current = text.to_owned();
    for (field, value, after) in fields {
        let Some(value) = value else { continue };
        let index = SpanIndex::parse(&current)?;
        let entry = entry_of(&index)?;
        let field_path = entry.clone().with_key(*field);
        current = if index.kind(&field_path).is_some() {
            set_scalar_in(&current, &index, &field_path, value, false)?
        } else {
            let Some(anchor) =
                after.iter().map(|key| entry.clone().with_key(*key)).find(|path| index.kind(path).is_some())
            else {
                return Err(EditError::CannotInsert {
                    path: field_path,
                    line: index.value(&entry).map_or(0, |span| span.line),
                    reason: "the mapping has none of the keys it would go after",
                });
            };
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
    keep_type: bool,
) -> Result<String, EditError> {
    let span = *locate_scalar(index, path)?;
    let current = index.scalar(path);
    if current == Some(value) {
        return Ok(text.to_owned());
    }
    let in_flow = index.is_flow(path).unwrap_or(false);
    // A typed value replaces a typed plain scalar as it is: `replicas: 2` → `replicas: 3`.
    let typed = keep_type
        && span.style == ScalarStyle::Plain
        && span.start < span.end
        && current.is_some_and(resolves_to_non_string)
        && resolves_to_non_string(value)
        && plain_is_syntactically_safe(value, in_flow);
    let mut rendered = if typed { value.to_owned() } else { render(value, span.style, in_flow) };
    // An empty value (`key:`) has no token; keep a blank between the indicator and the value.
    let after_indicator =
        span.start > 0 && !matches!(text.as_bytes().get(span.start - 1), Some(b' ' | b'\t' | b'\n' | b'\r'));
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
        Some(NodeKind::Mapping) => Err(EditError::NotAScalar { path: path.clone(), line: span.line, found: "mapping" }),
        Some(NodeKind::Sequence) => {
            Err(EditError::NotAScalar { path: path.clone(), line: span.line, found: "sequence" })
        }
        Some(NodeKind::Scalar) | None => match span.style {
            ScalarStyle::Literal | ScalarStyle::Folded => {
                Err(EditError::BlockScalar { path: path.clone(), line: span.line })
            }
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
            return EditError::MergeKey { path: path.clone(), line: merge_key.line };
        }
        break;
    }
    EditError::PathNotFound { path: path.clone() }
}

/// Path of the `images:` entry named `name`.
fn find_image(index: &SpanIndex, name: &str) -> Result<YamlPath, EditError> {
    let images = YamlPath::root().with_key("images");
    let not_found = || EditError::ImageNotFound { name: name.to_owned() };
    let Some(len) = index.sequence_len(&images) else {
        return match index.value(&images) {
            Some(span) => Err(EditError::NotASequence { path: images, line: span.line }),
            None => Err(not_found()),
        };
    };
    let mut matches: Vec<YamlPath> = (0..len)
        .map(|i| images.clone().with_index(i))
        .filter(|entry| {
            index.kind(entry) == Some(NodeKind::Mapping) && index.scalar(&entry.clone().with_key("name")) == Some(name)
        })
        .collect();
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.remove(0)),
        count => Err(EditError::AmbiguousImage { name: name.to_owned(), count }),
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
        return Err(EditError::PathNotFound { path: anchor.clone() });
    };
    let cannot = |reason| EditError::CannotInsert { path: field_path.clone(), line: entry_span.line, reason };
    let edited = if index.is_flow(entry) == Some(true) {
        // Only a braced mapping can take another entry; `[name: x]` is a one-pair mapping
        // that a `,` would turn into a second sequence item.
        if !text[entry_span.range()].starts_with('{') {
            return Err(cannot("the entry is a single-pair flow mapping without braces"));
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
                let eol = if text[..at].ends_with("\r\n") { "\r\n" } else { "\n" };
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
    let fail = |reason: String| EditError::ReadBack { path: path.clone(), reason };
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
    plain_is_syntactically_safe(value, in_flow) && !resolves_to_non_string(value)
}

/// Whether `value` written without quotes reads back as the same text (whatever type a reader
/// then gives it).
fn plain_is_syntactically_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    let ends_in_blank = value.ends_with([' ', '\t']);
    if ends_in_blank || "-?:,[]{}#&*!|>'\"%@` \t".contains(first) {
        return false;
    }
    let awkward_char =
        |c: char| !is_printable(c) || matches!(c, '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}');
    if value.chars().any(awkward_char) {
        return false;
    }
    if value.contains(": ") || value.contains(" #") || value.ends_with(':') {
        return false;
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    !value.starts_with("...")
}

/// Whether a plain scalar would be read as null, a boolean, a number or a timestamp.
fn resolves_to_non_string(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y", "yes", "Yes", "YES",
        "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "<<", "=",
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
        rest.chars().any(|c| c.is_digit(radix)) && rest.chars().all(|c| c == '_' || c.is_digit(radix))
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
    let mantissa_ok = digits(whole) && fraction.is_none_or(digits) && mantissa.chars().any(|c| c.is_ascii_digit());
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
        && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '_' | ':' | '.'))
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
    value
        .chars()
        .all(|c| is_printable(c) && !matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}'))
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
                let _ = if code <= 0xff { write!(out, "\\x{code:02X}") } else { write!(out, "\\u{code:04X}") };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Applies one edit to a JSON document.
fn json_apply(text: &str, edit: &Edit) -> Result<String, EditError> {
    match edit {
        Edit::SetScalar { path, value } => json_set(text, path, value, false),
        Edit::SetValue { path, value } => json_set(text, path, value, true),
        Edit::KustomizeImage { name, new_tag, digest } => {
            if new_tag.is_none() && digest.is_none() {
                return Err(EditError::NothingToSet { name: name.clone() });
            }
            json_set_fields(
                text,
                |index| json_find_image(index, name),
                &[("newTag", new_tag.as_deref(), &["name"]), ("digest", digest.as_deref(), &["newTag", "name"])],
            )
        }
        Edit::HelmImage { path, tag, digest } => {
            if tag.is_none() && digest.is_none() {
                return Err(EditError::NothingToSet { name: path.to_string() });
            }
            let entry_of = |index: &json::JsonIndex| match index.get(path) {
                Some(node) if node.kind == json::JsonKind::Object => Ok(path.clone()),
                Some(node) => Err(EditError::NotAMapping { path: path.clone(), line: node.line }),
                None => Err(EditError::PathNotFound { path: path.clone() }),
            };
            json_set_fields(
                text,
                entry_of,
                &[("tag", tag.as_deref(), &["repository"]), ("digest", digest.as_deref(), &["tag", "repository"])],
            )
        }
    }
}

fn json_index(text: &str) -> Result<json::JsonIndex, EditError> {
    json::JsonIndex::parse(text).map_err(|error| EditError::JsonSyntax {
        line: error.line,
        column: error.column,
        message: match error.duplicate {
            Some(path) => format!("member `{path}` appears twice"),
            None => error.message,
        },
    })
}

/// Sets the JSON scalar at `path`. Strings stay strings; with `keep_type`, a number, boolean
/// or null is replaced by `value` written bare when `value` is a literal of the same kind.
fn json_set(text: &str, path: &YamlPath, value: &str, keep_type: bool) -> Result<String, EditError> {
    let index = json_index(text)?;
    let Some(node) = index.get(path) else {
        return Err(EditError::PathNotFound { path: path.clone() });
    };
    let found = match node.kind {
        json::JsonKind::Object => Some("mapping"),
        json::JsonKind::Array => Some("sequence"),
        _ => None,
    };
    if let Some(found) = found {
        return Err(EditError::NotAScalar { path: path.clone(), line: node.line, found });
    }
    let bare = match node.kind {
        json::JsonKind::Number => json::is_number(value),
        json::JsonKind::Bool => matches!(value, "true" | "false"),
        json::JsonKind::Null => value == "null",
        _ => false,
    };
    let unchanged =
        node.scalar.as_deref() == Some(value) && (node.kind == json::JsonKind::String || (keep_type && bare));
    if unchanged {
        return Ok(text.to_owned());
    }
    let rendered = if keep_type && bare { value.to_owned() } else { json::quoted(value) };
    let edited = splice(text, node.start, node.end, &rendered);
    json_read_back(&edited, path, value)?;
    Ok(edited)
}

fn json_read_back(edited: &str, path: &YamlPath, value: &str) -> Result<(), EditError> {
    let fail = |reason: String| EditError::ReadBack { path: path.clone(), reason };
    let index = json_index(edited).map_err(|error| fail(error.to_string()))?;
    match index.get(path).and_then(|node| node.scalar.as_deref()) {
        Some(found) if found == value => Ok(()),
        Some(found) => Err(fail(format!("found {found:?}"))),
        None => Err(fail("no scalar there".to_owned())),
    }
}

/// Path of the `images` entry named `name` in a JSON kustomization.
fn json_find_image(index: &json::JsonIndex, name: &str) -> Result<YamlPath, EditError> {
    let images = YamlPath::root().with_key("images");
    let not_found = || EditError::ImageNotFound { name: name.to_owned() };
    let Some(list) = index.get(&images) else {
        return Err(not_found());
    };
    if list.kind != json::JsonKind::Array {
        return Err(EditError::NotASequence { path: images, line: list.line });
    }
    let mut matches: Vec<YamlPath> = (0..list.len)
        .map(|i| images.clone().with_index(i))
        .filter(|entry| {
            let entry_name = index.get(&entry.clone().with_key("name"));
            entry_name.is_some_and(|node| node.kind == json::JsonKind::String && node.scalar.as_deref() == Some(name))
        })
        .collect();
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.remove(0)),
        count => Err(EditError::AmbiguousImage { name: name.to_owned(), count }),
    }
}

/// The JSON counterpart of [`set_fields`]: a missing member goes right after the anchor
/// member, on its own line with the anchor's indentation when the object spans lines, else
/// inline after a `, `.
fn json_set_fields(
    text: &str,
    entry_of: impl Fn(&json::JsonIndex) -> Result<YamlPath, EditError>,
    fields: &[FieldEdit<'_>],
) -> Result<String, EditError> {
    let mut current = text.to_owned();
    for (field, value, after) in fields {
        let Some(value) = value else { continue };
        let index = json_index(&current)?;
        let entry = entry_of(&index)?;
        let field_path = entry.clone().with_key(*field);
        if index.get(&field_path).is_some() {
            current = json_set(&current, &field_path, value, false)?;
            continue;
        }
        let entry_line = index.get(&entry).map_or(0, |node| node.line);
        let anchor =
            after.iter().filter_map(|key| index.get(&entry.clone().with_key(*key))).next().ok_or_else(|| {
                EditError::CannotInsert {
                    path: field_path.clone(),
                    line: entry_line,
                    reason: "the object has none of the members it would go after",
                }
            })?;
        let Some(entry_node) = index.get(&entry) else {
            return Err(EditError::PathNotFound { path: entry });
        };
        let member = format!("{}: {}", json::quoted(field), json::quoted(value));
        let multi_line = current[entry_node.start..entry_node.end].contains('\n');
        let key_start = anchor.key_start.unwrap_or(anchor.start);
        let line_start = current[..key_start].rfind('\n').map_or(0, |i| i + 1);
        let indent = &current[line_start..key_start];
        let insertion = if multi_line && indent.chars().all(|c| c == ' ' || c == '\t') {
            let eol = if current[..line_start].ends_with("\r\n") { "\r\n" } else { "\n" };
            format!(",{eol}{indent}{member}")
        } else {
            format!(", {member}")
        };
        current = splice(&current, anchor.end, anchor.end, &insertion);
        json_read_back(&current, &field_path, value)?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "ghcr.io/acme/checkout-api";
    const WORKER: &str = "ghcr.io/acme/checkout-worker";
    const NEW_DIGEST: &str = "sha256:6f11ad3c9450922f7ebcdf5a010fd54f42c9bff1dc1be8b9cfb0b7e0f25f560a";
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
        let file = format!("{}/../tests/fixtures/edit/{name}", env!("CARGO_MANIFEST_DIR"));
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
        let changed: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).map(|i| i + 1).collect();
        assert_eq!(changed, expected, "changed lines of:\n{after}");
        expected.iter().map(|line| new[line - 1]).collect()
    }

    /// Asserts that `after` is `before` plus exactly one line inserted as 1-based line `at`,
    /// and returns the inserted line.
    fn assert_inserted_line<'a>(before: &str, after: &'a str, at: usize) -> &'a str {
        let (old, new) = (lines(before), lines(after));
        assert_eq!(old.len() + 1, new.len(), "expected one more line:\n{after}");
        assert_eq!(old[..at - 1], new[..at - 1], "lines before {at} changed:\n{after}");
        assert_eq!(old[at - 1..], new[at..], "lines after {at} changed:\n{after}");
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
        assert_eq!(assert_changed_lines(&text, &edited, &[25]), ["    newTag: v1.42.0\n"]);
        let edited = set_kustomize_image(&text, WORKER, Some("1.50"), None).unwrap();
        assert_eq!(assert_changed_lines(&text, &edited, &[25]), ["    newTag: \"1.50\"\n"]);
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
        assert_eq!(assert_inserted_line(&text, &edited, 31), "    newTag: v1.31.2\n");
        insta::assert_snapshot!("kustomization_inserted_tag", edited);

        let both = set_kustomize_image(&text, envoy, Some("v1.31.2"), Some(NEW_DIGEST)).unwrap();
        assert_eq!(assert_inserted_line(&edited, &both, 32), format!("    digest: {NEW_DIGEST}\n"));
    }

    #[test]
    fn kustomization_image_errors() {
        let text = fixture("kustomization.yaml");
        assert_eq!(
            set_kustomize_image(&text, "ghcr.io/acme/unknown", Some("1"), None),
            Err(EditError::ImageNotFound { name: "ghcr.io/acme/unknown".into() })
        );
        assert_eq!(set_kustomize_image(&text, API, None, None), Err(EditError::NothingToSet { name: API.into() }));
        let twice = "images:\n- name: app\n  newTag: a\n- {name: app}\n";
        assert_eq!(
            set_kustomize_image(twice, "app", Some("b"), None),
            Err(EditError::AmbiguousImage { name: "app".into(), count: 2 })
        );
        let not_a_list = "images:\n  name: app\n";
        assert_eq!(
            set_kustomize_image(not_a_list, "app", Some("b"), None),
            Err(EditError::NotASequence { path: path("images"), line: 2 })
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
        assert_eq!(assert_inserted_line(&text, &edited, 7), "     newTag: v1.42.0\n");
        let cron = "ghcr.io/acme/checkout-cron";
        let edited = set_kustomize_image(&edited, cron, Some("2024-06-01"), None).unwrap();
        assert!(edited.ends_with("-   name: ghcr.io/acme/checkout-cron\n    newTag: \"2024-06-01\"\n"));
        let edited = set_kustomize_image(&edited, API, Some("1.42.0"), None).unwrap();
        insta::assert_snapshot!("kustomization_odd_indent", edited);
    }

    #[test]
    fn insertion_at_the_end_of_a_file_without_final_newline() {
        let text = "images:\n  - name: app\n    newName: other";
        let edited = set_kustomize_image(text, "app", Some("v2"), None).unwrap();
        assert_eq!(edited, "images:\n  - name: app\n    newTag: v2\n    newName: other");
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
        assert_eq!(assert_changed_lines(&text, &edited, &[58]), ["    value: 1.42.0\n"]);
        let edited = set_scalar(&text, &path("extraEnv[1].value"), "true").unwrap();
        assert_eq!(assert_changed_lines(&text, &edited, &[58]), ["    value: \"true\"\n"]);
    }

    #[test]
    fn values_double_quoted_value_is_escaped() {
        let text = fixture("values.yaml");
        let value = "-Xmx1g -Dlabel=\"a\\b\"\t";
        let edited = set_scalar(&text, &path("extraEnv[0].value"), value).unwrap();
        let changed = assert_changed_lines(&text, &edited, &[56]);
        assert_eq!(changed, ["    value: \"-Xmx1g -Dlabel=\\\"a\\\\b\\\"\\t\"\n"]);
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
            Err(EditError::MergeKey { path: path("canary.nodeSelector"), line: 33 })
        );
        assert!(matches!(
            set_scalar(&text, &path("resources"), "x"),
            Err(EditError::NotAScalar { line: 38, found: "mapping", .. })
        ));
        assert!(matches!(
            set_scalar(&text, &path("extraEnv"), "x"),
            Err(EditError::NotAScalar { line: 55, found: "sequence", .. })
        ));
        assert_eq!(
            set_scalar(&text, &path("nginxConfig"), "x"),
            Err(EditError::BlockScalar { path: path("nginxConfig"), line: 48 })
        );
        assert_eq!(
            set_scalar(&text, &path("image.digest"), "x"),
            Err(EditError::PathNotFound { path: path("image.digest") })
        );
    }

    #[test]
    fn odd_indentation_and_flow_sequence_spacing() {
        let text = fixture("odd-indent.yaml");
        let image = path("spec.template.spec.containers[0].image");
        let edited = set_scalar(&text, &image, "ghcr.io/acme/checkout-api:1.42.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[13]);
        assert_eq!(changed, ["           image:    ghcr.io/acme/checkout-api:1.42.0     # rewritten on promotion\n"]);
        let port = path("spec.template.spec.containers[0].args[1]");
        let edited = set_scalar(&edited, &port, "9090").unwrap();
        let proxy = path("spec.template.spec.containers[1].image");
        let edited = set_scalar(&edited, &proxy, "docker.io/istio/proxyv2:1.23.0").unwrap();
        let changed = assert_changed_lines(&text, &edited, &[13, 14, 16]);
        assert_eq!(changed[1], "           args: [ \"--port\" ,   \"9090\" ]\n");
        assert_eq!(changed[2], "             image: \"docker.io/istio/proxyv2:1.23.0\"\n");
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
        let tag = Edit::KustomizeImage { name: API.into(), new_tag: Some("1.42.0".into()), digest: None };
        let tagged = apply(&text, std::slice::from_ref(&tag)).unwrap();
        assert_eq!(assert_changed_lines(&text, &tagged, &[6]), ["    newTag: 1.42.0 # pinned\r\n"]);
        let digest = Edit::KustomizeImage { name: WORKER.into(), new_tag: None, digest: Some(NEW_DIGEST.into()) };
        let edited = apply(&text, &[tag, digest]).unwrap();
        assert_eq!(assert_inserted_line(&tagged, &edited, 8), format!("    digest: {NEW_DIGEST}\r\n"));
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
        assert_eq!(assert_changed_lines(&text, &edited, &[5]), ["  tag: 1.42.0\n"]);
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
                assert!(same == text, "{name}: setting {path} to its value changed the text");
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
    fn helm_digest_is_inserted_after_the_tag() {
        let text = fixture("values.yaml");
        let image = path("image");
        let edited = set_helm_image(&text, &image, None, Some(NEW_DIGEST)).unwrap();
        assert_eq!(assert_inserted_line(&text, &edited, 11), format!("  digest: {NEW_DIGEST}\n"));
        insta::assert_snapshot!("values_helm_digest", edited);

        // Tag and digest in one edit: the tag line changes and the digest line is added.
        let both = apply(
            &text,
            &[Edit::HelmImage { path: image.clone(), tag: Some("1.42.0".into()), digest: Some(NEW_DIGEST.into()) }],
        )
        .unwrap();
        let again = set_helm_image(&both, &image, Some("1.42.0"), Some(NEW_DIGEST)).unwrap();
        assert!(again == both, "a second identical edit changes nothing");
        assert_eq!(
            lines(&both)[9..11],
            ["  tag: '1.42.0'          # set on promotion\n", &format!("  digest: {NEW_DIGEST}\n")]
        );

        assert!(matches!(
            set_helm_image(&text, &path("global"), None, Some(NEW_DIGEST)),
            Err(EditError::CannotInsert { .. })
        ));
        assert!(matches!(
            set_helm_image(&text, &path("image.tag"), Some("1"), None),
            Err(EditError::NotAMapping { line: 10, .. })
        ));
        assert_eq!(
            set_helm_image(&text, &path("nothing"), Some("1"), None),
            Err(EditError::PathNotFound { path: path("nothing") })
        );
        assert!(matches!(set_helm_image(&text, &image, None, None), Err(EditError::NothingToSet { .. })));
    }

    #[test]
    fn set_value_keeps_numbers_and_booleans_bare() {
        let text = fixture("values.yaml");
        let edited = set_value(&text, &path("worker.replicaCount"), "3").unwrap();
        assert_eq!(assert_changed_lines(&text, &edited, &[17]), ["  replicaCount: 3\n"]);
        // A string that happens to be typed as a number stays a string.
        let edited = set_value(&text, &path("image.tag"), "1.50").unwrap();
        assert!(edited.contains("  tag: '1.50'  "));
        // A number replaced by a word becomes that word, quoted only if it must be.
        let edited = set_value(&text, &path("worker.replicaCount"), "many").unwrap();
        assert!(edited.contains("  replicaCount: many\n"));
        // set_scalar writes strings: the same edit quotes the number.
        let edited = set_scalar(&text, &path("worker.replicaCount"), "3").unwrap();
        assert!(edited.contains("  replicaCount: \"3\"\n"));
    }

    #[test]
    fn json_values_keep_their_layout() {
        let text = fixture("values.json");
        let edits = [
            Edit::SetScalar { path: path("image.tag"), value: "1.42.0".into() },
            Edit::SetValue { path: path("replicaCount"), value: "3".into() },
            Edit::SetValue { path: path("autoscaling.enabled"), value: "true".into() },
            Edit::SetScalar { path: path("extraArgs[1]"), value: "9090".into() },
        ];
        let edited = apply_format(Format::Json, &text, &edits).unwrap();
        let changed = assert_changed_lines(&text, &edited, &[4, 7, 8, 13]);
        assert_eq!(
            changed,
            [
                "    \"tag\": \"1.42.0\",\n",
                "  \"replicaCount\": 3,\n",
                "  \"autoscaling\": {\"enabled\": true, \"maxReplicas\": 10},\n",
                "  \"extraArgs\": [\"--port\", \"9090\"],\n",
            ]
        );
        insta::assert_snapshot!("values_json", edited);

        let digest = Edit::HelmImage { path: path("image"), tag: None, digest: Some(NEW_DIGEST.into()) };
        let pinned = apply_format(Format::Json, &text, std::slice::from_ref(&digest)).unwrap();
        assert_eq!(
            lines(&pinned)[3..5],
            ["    \"tag\": \"1.41.0\",\n", &format!("    \"digest\": \"{NEW_DIGEST}\",\n")]
        );
        serde_json::from_str::<serde_json::Value>(&pinned).unwrap();

        // Quotes and escapes are JSON's, never YAML's; a same-value edit keeps every byte.
        let edited = set_json(&text, "podAnnotations.note", "a\"b\u{1}\u{85}").unwrap();
        assert!(edited.contains("\"note\": \"a\\\"b\\u0001\u{85}\"\n"));
        let same = set_json(&text, "podAnnotations.note", "café \"quoted\"").unwrap();
        assert!(same == text);
        let same = apply_format(Format::Json, &text, &[]).unwrap();
        assert!(same == text);
        // A typed value that does not fit the member's type makes it a string.
        let edited =
            apply_format(Format::Json, &text, &[Edit::SetValue { path: path("replicaCount"), value: "two".into() }])
                .unwrap();
        assert!(edited.contains("\"replicaCount\": \"two\","));
    }

    fn set_json(text: &str, dotted: &str, value: &str) -> Result<String, EditError> {
        let edit = Edit::SetScalar { path: path(dotted), value: value.into() };
        apply_format(Format::Json, text, &[edit])
    }

    #[test]
    fn json_kustomization_on_one_line() {
        let text = fixture("kustomization.json");
        let edits = [
            Edit::KustomizeImage { name: API.into(), new_tag: Some("1.42.0".into()), digest: Some(NEW_DIGEST.into()) },
            Edit::KustomizeImage { name: WORKER.into(), new_tag: Some("v1.42.0".into()), digest: None },
        ];
        let edited = apply_format(Format::Json, &text, &edits).unwrap();
        assert_eq!(
            edited,
            format!(
                "{{\"apiVersion\":\"kustomize.config.k8s.io/v1beta1\",\"kind\":\"Kustomization\",\"resources\":[\"deployment.yaml\"],\"images\":[{{\"name\":\"{API}\",\"newTag\":\"1.42.0\", \"digest\": \"{NEW_DIGEST}\"}},{{\"name\":\"{WORKER}\", \"newTag\": \"v1.42.0\"}}]}}\n"
            )
        );
        assert_eq!(
            apply_format(
                Format::Json,
                &text,
                &[Edit::KustomizeImage {
                    name: "ghcr.io/acme/unknown".into(),
                    new_tag: Some("1".into()),
                    digest: None
                }]
            ),
            Err(EditError::ImageNotFound { name: "ghcr.io/acme/unknown".into() })
        );
    }

    #[test]
    fn json_errors_name_the_problem() {
        let text = fixture("values.json");
        assert_eq!(set_json(&text, "image.digest", "x"), Err(EditError::PathNotFound { path: path("image.digest") }));
        assert!(matches!(set_json(&text, "image", "x"), Err(EditError::NotAScalar { line: 2, found: "mapping", .. })));
        assert!(matches!(set_json(&text, "extraArgs", "x"), Err(EditError::NotAScalar { found: "sequence", .. })));
        let error = set_json("{\"a\": [1,}", "a", "x").unwrap_err();
        assert_eq!(error.to_string(), "parse json at line 1, column 10: expected a value");
        let error = set_json("{\"a\": 1, \"a\": 2}", "a", "x").unwrap_err();
        assert!(error.to_string().contains("member `a` appears twice"), "{error}");
    }

    #[test]
    fn pins_are_read_from_yaml_and_json() {
        let kustomization = fixture("kustomization.yaml");
        let pinned = read_pin(
            Format::Yaml,
            &kustomization,
            &PinLocation::KustomizeImage("ghcr.io/acme/checkout-migrations".into()),
        )
        .unwrap();
        assert_eq!(pinned.tag, None);
        assert!(pinned.digest.unwrap().starts_with("sha256:58af"));
        let values = fixture("values.yaml");
        let pinned = read_pin(Format::Yaml, &values, &PinLocation::Scalar(path("image.tag"))).unwrap();
        assert_eq!(pinned, Pinned { tag: Some("1.41.0".into()), digest: None });
        let pinned_json =
            read_pin(Format::Json, &fixture("values.json"), &PinLocation::Scalar(path("image.tag"))).unwrap();
        assert_eq!(pinned_json.tag.as_deref(), Some("1.41.0"));
        let with_digest = set_helm_image(&values, &path("image"), None, Some(NEW_DIGEST)).unwrap();
        let pinned = read_pin(Format::Yaml, &with_digest, &PinLocation::Scalar(path("image.tag"))).unwrap();
        assert_eq!(pinned.digest.as_deref(), Some(NEW_DIGEST));
        assert_eq!(
            read_pin(Format::Yaml, &values, &PinLocation::Scalar(path("image.nope"))),
            Err(EditError::PathNotFound { path: path("image.nope") })
        );
        assert!(
            read_pin(Format::Json, &fixture("kustomization.json"), &PinLocation::KustomizeImage(WORKER.into()))
                .unwrap()
                == Pinned::default()
        );
    }

    #[test]
    fn formats_follow_the_file_name() {
        assert_eq!(Format::from_path(Path::new("a/values.json")), Format::Json);
        assert_eq!(Format::from_path(Path::new("a/VALUES.JSON")), Format::Json);
        assert_eq!(Format::from_path(Path::new("kustomization.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("Kustomization")), Format::Yaml);
    }

    #[test]
    fn syntax_and_duplicate_key_errors() {
        let error = set_scalar("a: [1, 2\nb: 3\n", &path("a"), "x").unwrap_err();
        let EditError::Syntax { line, column, message } = &error else {
            panic!("unexpected {error:?}");
        };
        assert_eq!((*line, *column), (2, 2));
        assert!(!message.is_empty());
        assert_eq!(
            set_scalar("a: 1\na: 2\n", &path("a"), "x"),
            Err(EditError::DuplicateKey { path: path("a"), line: 2 })
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
            assert!(!plain_is_safe(unsafe_value, false), "{unsafe_value:?} must be quoted");
        }
        for flow_unsafe in ["a,b", "a[b", "a]", "a{b", "a}"] {
            assert!(plain_is_safe(flow_unsafe, false), "{flow_unsafe:?} is fine in block");
            assert!(!plain_is_safe(flow_unsafe, true), "{flow_unsafe:?} must be quoted in flow");
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
        assert_eq!(SpanIndex::parse(&edited).unwrap().scalar(&path("k")), Some(value));
    }
}
