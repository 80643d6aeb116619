//! Loose, error-reporting access to a JSON payload, shared by the forge modules.
//!
//! Forge payloads are read as `serde_json::Value` rather than typed structs: their shape varies
//! across event versions, self-hosted releases and hook kinds, and only the handful of fields
//! gantry relies on should be able to make a delivery fail. Every failure names the dotted path
//! of the offending field so the delivery log says exactly what was wrong.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::ParseError;

/// Decodes a delivery body into its top-level object.
pub(crate) fn decode(event_type: &str, body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|source| ParseError::InvalidJson { event_type: event_type.to_owned(), source })?;
    match value {
        Value::Object(root) => Ok(root),
        _ => Err(ParseError::NotAnObject { event_type: event_type.to_owned() }),
    }
}

/// Typed access to a payload's fields by dotted path (`repository.full_name`).
pub(crate) struct Payload<'a> {
    /// The event type the delivery claimed to be, for error messages.
    pub(crate) event_type: &'a str,
    root: &'a Map<String, Value>,
}

impl<'a> Payload<'a> {
    pub(crate) fn new(event_type: &'a str, root: &'a Map<String, Value>) -> Self {
        Self { event_type, root }
    }

    /// Finds the value at a dotted path; `null` counts as absent because forges send `null`
    /// for fields that do not apply (e.g. `head_commit` of a deletion).
    pub(crate) fn lookup(&self, path: &str) -> Result<Option<&'a Value>, ParseError> {
        let mut current = self.root;
        let mut segments = path.split('.').peekable();
        let mut walked = 0;
        while let Some(segment) = segments.next() {
            walked += segment.len();
            let value = match current.get(segment) {
                None | Some(Value::Null) => return Ok(None),
                Some(value) => value,
            };
            if segments.peek().is_none() {
                return Ok(Some(value));
            }
            let Value::Object(object) = value else {
                return Err(self.invalid(&path[..walked], "is not an object"));
            };
            current = object;
            walked += 1;
        }
        Ok(None)
    }

    pub(crate) fn optional_str(&self, path: &str) -> Result<Option<&'a str>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.invalid(path, "is not a string")),
        }
    }

    /// Like [`Payload::optional_str`], but an empty string also counts as absent: forges send
    /// `""` for names and labels that were never set.
    pub(crate) fn optional_nonempty_str(&self, path: &str) -> Result<Option<&'a str>, ParseError> {
        Ok(self.optional_str(path)?.filter(|text| !text.is_empty()))
    }

    pub(crate) fn required_str(&self, path: &str) -> Result<&'a str, ParseError> {
        self.optional_str(path)?.ok_or_else(|| self.missing(path))
    }

    /// A required string that must also not be empty.
    pub(crate) fn required_nonempty_str(&self, path: &str) -> Result<&'a str, ParseError> {
        let text = self.required_str(path)?;
        if text.is_empty() {
            return Err(self.invalid(path, "is empty"));
        }
        Ok(text)
    }

    pub(crate) fn optional_bool(&self, path: &str) -> Result<Option<bool>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.invalid(path, "is not a boolean")),
        }
    }

    pub(crate) fn optional_u64(&self, path: &str) -> Result<Option<u64>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::Number(number)) => {
                number.as_u64().map(Some).ok_or_else(|| self.invalid(path, "is not a non-negative whole number"))
            }
            Some(_) => Err(self.invalid(path, "is not a number")),
        }
    }

    pub(crate) fn required_u64(&self, path: &str) -> Result<u64, ParseError> {
        self.optional_u64(path)?.ok_or_else(|| self.missing(path))
    }

    /// An optional commit id, checked to be one.
    pub(crate) fn optional_commit(&self, path: &str) -> Result<Option<&'a str>, ParseError> {
        let Some(id) = self.optional_str(path)? else {
            return Ok(None);
        };
        if is_commit_id(id) {
            Ok(Some(id))
        } else {
            Err(self.invalid(path, "is not a 40 or 64 digit hexadecimal commit id"))
        }
    }

    pub(crate) fn required_commit(&self, path: &str) -> Result<&'a str, ParseError> {
        self.optional_commit(path)?.ok_or_else(|| self.missing(path))
    }

    /// Reads a timestamp in any form the forges use: RFC 3339 (`2019-05-15T15:20:33Z`), a Unix
    /// time in seconds (GitHub's `repository.pushed_at` in push payloads), or GitLab's
    /// `2017-12-10 17:08:07 UTC` and `2021-04-28 21:50:00 +0200`.
    pub(crate) fn optional_timestamp(&self, path: &str) -> Result<Option<DateTime<Utc>>, ParseError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::String(text)) => parse_timestamp(text)
                .map(Some)
                .ok_or_else(|| self.invalid(path, "is not a timestamp in a known format")),
            Some(Value::Number(number)) => number
                .as_i64()
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
                .map(Some)
                .ok_or_else(|| self.invalid(path, "is not a Unix time in whole seconds")),
            Some(_) => Err(self.invalid(path, "is neither a timestamp string nor a number")),
        }
    }

    /// The first of `paths` that holds a timestamp. Each one that is present must be readable,
    /// so a garbled field is reported rather than silently skipped.
    pub(crate) fn first_timestamp(&self, paths: &[&str]) -> Result<Option<DateTime<Utc>>, ParseError> {
        for path in paths {
            if let Some(timestamp) = self.optional_timestamp(path)? {
                return Ok(Some(timestamp));
            }
        }
        Ok(None)
    }

    /// The first of `paths` that holds a non-empty string.
    pub(crate) fn first_nonempty_str(&self, paths: &[&str]) -> Result<Option<&'a str>, ParseError> {
        for path in paths {
            if let Some(text) = self.optional_nonempty_str(path)? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// The array at `path`, empty when absent.
    pub(crate) fn optional_array(&self, path: &str) -> Result<&'a [Value], ParseError> {
        match self.lookup(path)? {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.invalid(path, "is not an array")),
        }
    }

    /// The union of the `added`, `modified` and `removed` paths of the commits listed at
    /// `path`, sorted and without duplicates, with what a caller needs to judge whether the
    /// list is whole. GitHub and GitLab describe commits the same way.
    pub(crate) fn changed_paths(&self, path: &str) -> Result<ChangedPaths, ParseError> {
        let mut paths = BTreeSet::new();
        let commits = self.optional_array(path)?;
        let mut most_files = 0;
        for (index, commit) in commits.iter().enumerate() {
            let Value::Object(commit) = commit else {
                return Err(self.invalid(&format!("{path}[{index}]"), "is not an object"));
            };
            let mut files = 0;
            for list in ["added", "modified", "removed"] {
                let field = || format!("{path}[{index}].{list}");
                match commit.get(list) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(entries)) => {
                        files += entries.len();
                        for entry in entries {
                            let Value::String(changed) = entry else {
                                return Err(self.invalid(&field(), "holds a value that is not a string"));
                            };
                            paths.insert(changed.clone());
                        }
                    }
                    Some(_) => return Err(self.invalid(&field(), "is not an array")),
                }
            }
            most_files = most_files.max(files);
        }
        Ok(ChangedPaths {
            paths: paths.into_iter().collect(),
            commits: commits.len(),
            most_files_in_a_commit: most_files,
        })
    }

    pub(crate) fn missing(&self, field: &str) -> ParseError {
        ParseError::MissingField { event_type: self.event_type.to_owned(), field: field.to_owned() }
    }

    pub(crate) fn invalid(&self, field: &str, reason: &str) -> ParseError {
        ParseError::InvalidField {
            event_type: self.event_type.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// The files a push's listed commits touch, and how much the list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangedPaths {
    /// Changed paths, sorted, without duplicates.
    pub(crate) paths: Vec<String>,
    /// Commits listed.
    pub(crate) commits: usize,
    /// The most files one listed commit names (added, modified and removed together).
    pub(crate) most_files_in_a_commit: usize,
}

/// Parses the timestamp forms listed on [`Payload::optional_timestamp`].
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(timestamp) = DateTime::parse_from_rfc3339(text) {
        return Some(timestamp.with_timezone(&Utc));
    }
    if let Some(naive) = text.strip_suffix(" UTC") {
        return NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S").ok().map(|naive| naive.and_utc());
    }
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z").ok().map(|timestamp| timestamp.with_timezone(&Utc))
}

/// Git object ids are 40 (SHA-1) or 64 (SHA-256) hex digits.
pub(crate) fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Forges write an all-zero id for the missing side of a ref creation or deletion.
pub(crate) fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// Whether `digest` is an OCI content digest gantry can pin an image by: `sha256:` with 64
/// lowercase hex digits, or `sha512:` with 128.
pub(crate) fn is_image_digest(digest: &str) -> bool {
    let (length, hex) = if let Some(hex) = digest.strip_prefix("sha256:") {
        (64, hex)
    } else if let Some(hex) = digest.strip_prefix("sha512:") {
        (128, hex)
    } else {
        return false;
    };
    hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a full ref into its kind and short name; `None` for refs outside `refs/heads/` and
/// `refs/tags/` (notes, merge-request refs, …).
pub(crate) fn split_ref(full_ref: &str) -> Option<(crate::RefKind, &str)> {
    if let Some(name) = full_ref.strip_prefix("refs/heads/") {
        Some((crate::RefKind::Branch, name))
    } else {
        full_ref.strip_prefix("refs/tags/").map(|name| (crate::RefKind::Tag, name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn root(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn timestamps_in_every_forge_format() {
        let expected = "2017-12-10T17:08:07+00:00";
        for text in [
            "2017-12-10T17:08:07Z",
            "2017-12-10T18:08:07+01:00",
            "2017-12-10 17:08:07 UTC",
            "2017-12-10 19:08:07 +0200",
        ] {
            let parsed = parse_timestamp(text).map(|t| t.to_rfc3339());
            assert_eq!(parsed.as_deref(), Some(expected), "{text}");
        }
        for text in ["", "yesterday", "2017-12-10", "2017-12-10 17:08:07", "2017-13-10 17:08:07 UTC"] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn first_timestamp_reports_a_garbled_earlier_field() {
        let map = root(json!({ "a": "garbled", "b": "2017-12-10T17:08:07Z" }));
        let payload = Payload::new("x", &map);
        let error = payload.first_timestamp(&["a", "b"]).unwrap_err();
        assert!(matches!(&error, ParseError::InvalidField { field, .. } if field == "a"), "{error:?}");
        assert!(payload.first_timestamp(&["missing", "b"]).unwrap().is_some());
    }

    #[test]
    fn numbers_must_be_whole_and_non_negative() {
        let map = root(json!({ "a": -1, "b": 1.5, "c": "7", "d": 7 }));
        let payload = Payload::new("x", &map);
        for field in ["a", "b", "c"] {
            assert!(payload.optional_u64(field).is_err(), "{field}");
        }
        assert_eq!(payload.optional_u64("d").unwrap(), Some(7));
        assert!(matches!(payload.required_u64("e"), Err(ParseError::MissingField { .. })));
    }

    #[test]
    fn image_digests_need_the_full_lowercase_hex() {
        let hex64 = "3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498";
        assert!(is_image_digest(&format!("sha256:{hex64}")));
        assert!(is_image_digest(&format!("sha512:{hex64}{hex64}")));
        assert!(!is_image_digest(&format!("sha256:{}", hex64.to_uppercase())));
        assert!(!is_image_digest("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b"));
        assert!(!is_image_digest(hex64));
        assert!(!is_image_digest("md5:abc"));
    }

    #[test]
    fn commit_ids_are_40_or_64_hex_digits() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"A".repeat(64)));
        assert!(!is_commit_id(&"a".repeat(41)));
        assert!(!is_commit_id(&"g".repeat(40)));
        assert!(!is_commit_id(""));
    }

    #[test]
    fn refs_split_into_kind_and_name() {
        assert_eq!(split_ref("refs/heads/feature/x"), Some((crate::RefKind::Branch, "feature/x")));
        assert_eq!(split_ref("refs/tags/v1"), Some((crate::RefKind::Tag, "v1")));
        assert_eq!(split_ref("refs/merge-requests/1/head"), None);
        assert_eq!(split_ref("main"), None);
    }
}
