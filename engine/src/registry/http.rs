//! The HTTP side of the OCI distribution API: authentication challenges (basic and the bearer
//! token flow), and retries of requests that failed for reasons that may pass.
//!
//! A request goes out without credentials until the registry says what it wants. A `401` with
//! `WWW-Authenticate: Basic` switches the registry to basic credentials for good; a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…` sends gantry to the realm for a token scoped to
//! the repositories the request touches (`repository:app:pull,push`, plus `repository:src:pull`
//! for a cross-repository mount). Tokens are cached per scope and fetched again when the
//! registry rejects them, so expiry needs no bookkeeping.
//!
//! `5xx`, `408` and `429` answers and network failures are retried with exponential backoff,
//! or after the delay a `Retry-After` header asks for. Only requests whose body can be sent
//! again are retried here; streamed uploads are retried whole by the caller.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::RegistryError;

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included; 1 means no retry.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long, plus some jitter.
    pub initial_delay: Duration,
    /// Upper bound of the exponential backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` that is waited out. A registry asking for more gets its error
    /// returned right away (still transient), leaving a longer wait to the caller.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// How long to wait before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(16);
        let base = self.initial_delay.saturating_mul(1 << exponent).min(self.max_delay);
        // Up to a quarter more, so that clients failing together do not retry together.
        let jitter_ms = (base.as_millis() as u64) / 4;
        let jitter = if jitter_ms == 0 { 0 } else { rand::rng().random_range(0..=jitter_ms) };
        base + Duration::from_millis(jitter)
    }
}

/// Runs `operation` until it succeeds, fails for good, or `policy` runs out of attempts.
/// For operations that cannot be retried request by request, such as a streamed upload.
pub(crate) async fn retry_whole<T, F, Fut>(policy: &RetryPolicy, mut operation: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if error.is_transient() && attempt < policy.max_attempts => {
                tracing::debug!(%error, attempt, "retrying a registry transfer");
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether an answer with this status may succeed when asked again.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    // A date in the past means "now".
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A registry's answer that was not what the request expected, with the OCI error code when
/// the body carried one.
#[derive(Debug)]
pub struct ResponseError {
    /// The HTTP status.
    pub status: u16,
    /// The first OCI error code of the body (`MANIFEST_UNKNOWN`, `DENIED`, ...).
    pub code: Option<String>,
    /// The error message of the body, or the start of the body itself.
    pub message: String,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the registry answered {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl StdError for ResponseError {}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl ResponseError {
    /// Reads the status and error body of `response`.
    pub(crate) async fn read(response: Response) -> Self {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Self::from_parts(status, &body)
    }

    fn from_parts(status: u16, body: &[u8]) -> Self {
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
            && let Some(first) = envelope.errors.into_iter().next()
        {
            return Self { status, code: (!first.code.is_empty()).then_some(first.code), message: first.message };
        }
        let text = String::from_utf8_lossy(body);
        let mut message: String = text.trim().chars().take(200).collect();
        if text.trim().chars().count() > 200 {
            message.push('…');
        }
        Self { status, code: None, message }
    }

    /// The error as a [`RegistryError`] about `action` on `reference`.
    pub(crate) fn into_error(self, action: &'static str, reference: String) -> RegistryError {
        RegistryError::Distribution { action, reference, status: Some(self.status), source: Box::new(self) }
    }
}

/// What a request is about, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) action: &'static str,
    pub(crate) reference: String,
}

impl Context {
    pub(crate) fn new(action: &'static str, reference: String) -> Self {
        Self { action, reference }
    }

    pub(crate) fn error(&self, source: impl StdError + Send + Sync + 'static) -> RegistryError {
        RegistryError::Distribution {
            action: self.action,
            reference: self.reference.clone(),
            status: None,
            source: Box::new(source),
        }
    }

    /// Turns an unexpected answer into an error, reading its body for the registry's reason.
    pub(crate) async fn unexpected(&self, response: Response) -> RegistryError {
        ResponseError::read(response).await.into_error(self.action, self.reference.clone())
    }
}

/// One request to the registry. The body is bytes so that it can be sent again.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// Token scopes the request needs, e.g. `repository:app:pull`.
    pub(crate) scopes: &'a [String],
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, url: String, scopes: &'a [String]) -> Self {
        Self { method, url, headers: HeaderMap::new(), body: None, scopes }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
    pub(crate) fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(params);
        let get =
            |key: &str| params.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| value.clone());
        Some(Self::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    }
}

/// Splits `a="x, y",b=z` into pairs; commas inside quotes belong to the value.
fn parse_params(input: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return pairs;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// What the registry asked for so far.
#[derive(Default)]
struct AuthState {
    /// The registry asked for basic credentials.
    basic: bool,
    /// The token endpoint of a registry that asked for bearer tokens.
    bearer: Option<(String, Option<String>)>,
    /// Tokens by scope key.
    tokens: HashMap<String, String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Sends requests to one registry, answering its authentication challenges and retrying what
/// may pass.
pub(crate) struct Transport {
    client: reqwest::Client,
    base_url: String,
    credentials: Option<(String, String)>,
    retry: RetryPolicy,
    state: Mutex<AuthState>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| user))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: String,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
    ) -> Self {
        Self { client, base_url, credentials, retry, state: Mutex::new(AuthState::default()) }
    }

    /// `http://host:port` or `https://host`.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // The state is a cache; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `url` goes to this registry; credentials never leave it (a blob may be served
    /// from a storage host after a redirect or an absolute upload location).
    fn is_own(&self, url: &str) -> bool {
        url.strip_prefix(&self.base_url).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The `Authorization` header for `scopes`, when one is known.
    fn authorization(&self, scopes: &[String]) -> Option<HeaderValue> {
        let state = self.state();
        if let Some(token) = state.tokens.get(&scope_key(scopes)) {
            return HeaderValue::from_str(&format!("Bearer {token}")).ok();
        }
        if state.basic
            && let Some((user, password)) = &self.credentials
        {
            return basic_header(user, password);
        }
        None
    }

    /// Once a registry has asked for tokens, fetches the token for new scopes up front rather
    /// than after another `401`.
    async fn prefetch_token(&self, scopes: &[String], context: &Context) -> Result<(), RegistryError> {
        let endpoint = {
            let state = self.state();
            if state.tokens.contains_key(&scope_key(scopes)) {
                return Ok(());
            }
            state.bearer.clone()
        };
        let Some((realm, service)) = endpoint else {
            return Ok(());
        };
        let token = self.fetch_token(&realm, service.as_deref(), scopes, context).await?;
        self.state().tokens.insert(scope_key(scopes), token);
        Ok(())
    }

    /// Reacts to a `401`: returns true when something changed that makes trying again useful.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        scopes: &[String],
        context: &Context,
    ) -> Result<bool, RegistryError> {
        let Some(challenge) =
            headers.get(WWW_AUTHENTICATE).and_then(|value| value.to_str().ok()).and_then(Challenge::parse)
        else {
            return Ok(false);
        };
        match challenge {
            Challenge::Basic => {
                if self.credentials.is_none() {
                    return Ok(false);
                }
                let mut state = self.state();
                let changed = !state.basic;
                state.basic = true;
                Ok(changed)
            }
            Challenge::Bearer { realm, service, scope } => {
                let mut wanted: Vec<String> = scopes.to_vec();
                if let Some(scope) = scope {
                    wanted.extend(scope.split(' ').map(str::to_owned));
                }
                wanted.sort();
                wanted.dedup();
                let token = self.fetch_token(&realm, service.as_deref(), &wanted, context).await?;
                let mut state = self.state();
                state.bearer = Some((realm, service));
                state.tokens.insert(scope_key(scopes), token);
                Ok(true)
            }
        }
    }

    /// The token flow: asks the realm for a token covering `scopes`, with basic credentials
    /// when there are any (anonymous otherwise, which public registries answer too).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        context: &Context,
    ) -> Result<String, RegistryError> {
        let token_context = Context::new("obtain a registry token for", context.reference.clone());
        let realm_url = reqwest::Url::parse(realm).map_err(|error| {
            token_context.error(ResponseError {
                status: 401,
                code: None,
                message: format!("the registry names an unusable token realm {realm:?}: {error}"),
            })
        })?;
        // Credentials may only travel in the clear to where the registry itself is reached
        // in the clear (loopback or an insecure registry).
        let realm_in_clear = realm_url.scheme() != "https";
        if realm_in_clear && self.credentials.is_some() && self.base_url.starts_with("https://") {
            return Err(RegistryError::Unsupported {
                operation: "obtain a registry token for",
                reference: context.reference.clone(),
                reason: "the registry sends credentials to a token realm over plain HTTP",
            });
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        for scope in scopes {
            query.push(("scope", scope));
        }
        let mut attempt = 1;
        loop {
            let mut request = self.client.get(realm_url.clone()).query(&query);
            if let Some((user, password)) = &self.credentials {
                request = request.basic_auth(user, Some(password));
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    let error = token_context.error(error);
                    if error.is_transient() && attempt < self.retry.max_attempts {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            };
            let status = response.status();
            if is_retryable(status) && attempt < self.retry.max_attempts {
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            if !status.is_success() {
                return Err(token_context.unexpected(response).await);
            }
            let body = response.bytes().await.map_err(|error| token_context.error(error))?;
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|error| {
                token_context.error(ResponseError {
                    status: status.as_u16(),
                    code: None,
                    message: format!("the token answer is not token JSON: {error}"),
                })
            })?;
            return parsed.token.or(parsed.access_token).filter(|token| !token.is_empty()).ok_or_else(|| {
                token_context.error(ResponseError {
                    status: status.as_u16(),
                    code: None,
                    message: "the token answer holds no token".to_owned(),
                })
            });
        }
    }

    /// Sends a request, authenticating and retrying as needed, and returns the first answer
    /// that is neither a challenge nor worth retrying. The caller judges its status.
    pub(crate) async fn send(&self, request: &Request<'_>, context: &Context) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        let mut authenticated = false;
        if self.is_own(&request.url) {
            self.prefetch_token(request.scopes, context).await?;
        }
        loop {
            let mut builder =
                self.client.request(request.method.clone(), &request.url).headers(request.headers.clone());
            if self.is_own(&request.url)
                && let Some(value) = self.authorization(request.scopes)
            {
                builder = builder.header(AUTHORIZATION, value);
            }
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let response = match builder.send().await {
                Ok(response) => response,
                Err(error) => {
                    let error = context.error(error);
                    if error.is_transient() && attempt < self.retry.max_attempts {
                        tracing::debug!(%error, attempt, "retrying a registry request");
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !authenticated
                && self.is_own(&request.url)
                && self.authenticate(response.headers(), request.scopes, context).await?
            {
                // A new token or credentials; trying again is not a retry of a failure.
                authenticated = true;
                continue;
            }
            if is_retryable(status) && attempt < self.retry.max_attempts {
                let wait = match retry_after(response.headers()) {
                    Some(wait) if wait > self.retry.max_retry_after => return Ok(response),
                    Some(wait) => wait,
                    None => self.retry.backoff(attempt),
                };
                tracing::debug!(
                    status = status.as_u16(),
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    url = %request.url,
                    "retrying a registry request"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Ok(response);
        }
    }

    /// Sends a request with a streamed body once: a stream cannot be replayed, so failures
    /// go back to the caller, who retries the whole transfer.
    pub(crate) async fn send_stream(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: reqwest::Body,
        scopes: &[String],
        context: &Context,
    ) -> Result<Response, RegistryError> {
        let mut builder = self.client.request(method, url).headers(headers);
        if self.is_own(url)
            && let Some(value) = self.authorization(scopes)
        {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(body).send().await.map_err(|error| context.error(error))
    }
}

fn scope_key(scopes: &[String]) -> String {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.join(" ")
}

fn basic_header(user: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:team/app:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/t"),
            Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: None, scope: None })
        );
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let third = policy.backoff(3);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(500));
        let late = policy.backoff(30);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(625));
    }

    #[test]
    fn error_bodies_keep_the_oci_code() {
        let error = ResponseError::from_parts(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(error.code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(error.to_string(), "the registry answered 404 MANIFEST_UNKNOWN: manifest unknown");
        let error = ResponseError::from_parts(502, b"<html>bad gateway</html>");
        assert_eq!(error.code, None);
        assert_eq!(error.to_string(), "the registry answered 502: <html>bad gateway</html>");
    }

    #[tokio::test]
    async fn whole_operations_retry_transient_errors_only() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_secs(1),
        };
        let transient = || RegistryError::Distribution {
            action: "upload blob to",
            reference: "h/app".into(),
            status: Some(503),
            source: "busy".into(),
        };
        let mut calls = 0;
        let result: Result<(), _> = retry_whole(&policy, || {
            calls += 1;
            std::future::ready(Err(transient()))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let result = retry_whole(&policy, || {
            calls += 1;
            std::future::ready(if calls < 2 { Err(transient()) } else { Ok(calls) })
        })
        .await;
        assert_eq!(result.unwrap(), 2);

        let mut calls = 0;
        let result: Result<(), _> = retry_whole(&policy, || {
            calls += 1;
            std::future::ready(Err(RegistryError::NotFound { reference: "h/app".into() }))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
