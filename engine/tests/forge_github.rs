//! The GitHub forge against an HTTP fake that replays GitHub's documented shapes: the pull
//! request objects are the real ones from octokit's examples (the REST API returns the same
//! object the `pull_request` webhook carries), and error answers follow the REST API docs
//! (`/rest/pulls/pulls`, "Rate limits for the REST API").

use std::time::Duration;

use gantry_engine::forge::{
    ChangeRequestDraft, ChangeRequestState, CommitState, CommitStatus, Forge, ForgeError, GitHubAuth, GitHubForge,
    MergeMethod, ReviewOptions,
};
use gantry_engine::model::ChangeRequest;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "https://github.com/Codertocat/Hello-World.git";
const PULLS: &str = "/repos/Codertocat/Hello-World/pulls";
const TOKEN: &str = "ghp_gantrytest0000000000000000000000000";

/// `pull_request` of an octokit example payload: PR #2 of Codertocat/Hello-World, head
/// `changes`, base `master`.
fn pull(example: &str) -> Value {
    let file = format!("{}/../tests/fixtures/github/octokit-examples/{example}.json", env!("CARGO_MANIFEST_DIR"));
    let payload: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    payload["pull_request"].clone()
}

/// No licensed example of a merged pull request exists, so one is derived from the closed
/// example the way GitHub reports a merge: `merged`, `merged_at` and `merge_commit_sha` set.
fn merged_pull() -> Value {
    let mut pull = pull("pull_request.closed.0");
    pull["merged"] = json!(true);
    pull["merged_at"] = json!("2019-05-15T15:20:41Z");
    pull["merge_commit_sha"] = json!("6dcb09b5b57875f334f61aebed695e2e4193db5e");
    pull
}

fn error_body(message: &str, status: u16) -> Value {
    json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest/pulls/pulls",
        "status": status.to_string(),
    })
}

fn draft() -> ChangeRequestDraft {
    ChangeRequestDraft {
        repo: REPO.into(),
        branch: "changes".into(),
        base: "master".into(),
        head_commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
        title: "Promote web 1.4.2 to prod".into(),
        body: "gantry promotes `web`".into(),
        run_id: "run-1".into(),
        review: ReviewOptions::default(),
    }
}

async fn forge(server: &MockServer) -> GitHubForge {
    GitHubForge::new(&server.uri(), GitHubAuth::Token(TOKEN.into())).unwrap()
}

fn find_pulls(answer: Value) -> Mock {
    Mock::given(method("GET"))
        .and(path(PULLS))
        .and(query_param("head", "Codertocat:changes"))
        .and(query_param("state", "all"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
}

#[tokio::test]
async fn opens_a_pull_request_with_labels_reviewers_and_draft() {
    let server = MockServer::start().await;
    find_pulls(json!([])).expect(1).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PULLS))
        .and(body_partial_json(json!({
            "title": "Promote web 1.4.2 to prod",
            "head": "changes",
            "base": "master",
            "body": "gantry promotes `web`",
            "draft": true,
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(pull("pull_request.opened.0")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/Codertocat/Hello-World/issues/2/labels"))
        .and(body_partial_json(json!({"labels": ["promotion", "prod"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/Codertocat/Hello-World/pulls/2/requested_reviewers"))
        .and(body_partial_json(json!({"reviewers": ["octocat"], "team_reviewers": ["platform"]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(pull("pull_request.opened.0")))
        .expect(1)
        .mount(&server)
        .await;

    let mut draft = draft();
    draft.review = ReviewOptions {
        labels: vec!["promotion".into(), "prod".into()],
        reviewers: vec!["octocat".into(), "acme/platform".into()],
        draft: true,
        auto_merge: None,
    };
    let (request, opened) = forge(&server).await.open_change_request(&draft).await.unwrap();
    assert!(opened);
    assert_eq!(request.id, 2);
    assert_eq!(request.branch, "changes");
    assert_eq!(request.base, "master");
    assert_eq!(request.head_commit, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(request.state, "open");
    assert_eq!(request.run_id, "run-1");
}

#[tokio::test]
async fn an_open_pull_request_for_the_branch_is_reused() {
    let server = MockServer::start().await;
    find_pulls(json!([pull("pull_request.opened.0")])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PULLS))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let (request, opened) = forge(&server).await.open_change_request(&draft()).await.unwrap();
    assert!(!opened);
    assert_eq!(request.id, 2);
}

#[tokio::test]
async fn a_422_already_exists_race_finds_the_other_pull_request() {
    let server = MockServer::start().await;
    // The lookup finds nothing; meanwhile another writer opens the PR, so the create is
    // refused; the second lookup finds theirs.
    find_pulls(json!([])).up_to_n_times(1).mount(&server).await;
    find_pulls(json!([pull("pull_request.opened.0")])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PULLS))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for Codertocat:changes."
            }],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (request, opened) = forge(&server).await.open_change_request(&draft()).await.unwrap();
    assert!(!opened);
    assert_eq!(request.id, 2);

    // Any other 422 is a permanent error that says what GitHub said.
    let server = MockServer::start().await;
    find_pulls(json!([])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PULLS))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
            "status": "422"
        })))
        .mount(&server)
        .await;
    let error = forge(&server).await.open_change_request(&draft()).await.unwrap_err();
    assert!(matches!(error, ForgeError::Status { status: 422, .. }), "{error:?}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn rate_limits_become_transient_errors_with_the_wait() {
    // Secondary limit: 403 with Retry-After.
    let server = MockServer::start().await;
    find_pulls(json!([])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PULLS))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "60")
                .insert_header("x-ratelimit-remaining", "4998")
                .set_body_json(error_body(
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    403,
                )),
        )
        .mount(&server)
        .await;
    let error = forge(&server).await.open_change_request(&draft()).await.unwrap_err();
    assert!(matches!(error, ForgeError::RateLimited { .. }), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));

    // Primary limit: x-ratelimit-remaining 0 and the reset time.
    let server = MockServer::start().await;
    let reset = chrono::Utc::now().timestamp() + 120;
    Mock::given(method("GET"))
        .and(path(PULLS))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(error_body("API rate limit exceeded for user ID 1.", 403)),
        )
        .mount(&server)
        .await;
    let error = forge(&server).await.find_change_request(REPO, "changes").await.unwrap_err();
    let wait = error.retry_after().unwrap();
    assert!((Duration::from_secs(115)..=Duration::from_secs(121)).contains(&wait), "{wait:?}");

    // 429 is a rate limit too; a plain 403 is a permission problem.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PULLS))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(error_body("Resource not accessible by integration", 403)),
        )
        .mount(&server)
        .await;
    let error = forge(&server).await.find_change_request(REPO, "changes").await.unwrap_err();
    assert!(matches!(error, ForgeError::Status { status: 403, .. }), "{error:?}");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("Resource not accessible"), "{error}");
}

fn request() -> ChangeRequest {
    ChangeRequest {
        id: 2,
        forge: "github".into(),
        repo: REPO.into(),
        branch: "changes".into(),
        base: "master".into(),
        head_commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
        title: String::new(),
        body: String::new(),
        run_id: "run-1".into(),
        state: "open".into(),
        created_at: 0,
    }
}

fn read_pull(answer: Value) -> Mock {
    Mock::given(method("GET"))
        .and(path(format!("{PULLS}/2")))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
}

#[tokio::test]
async fn merging_checks_the_head_and_reports_the_merge_commit() {
    let server = MockServer::start().await;
    read_pull(pull("pull_request.opened.0")).up_to_n_times(1).mount(&server).await;
    read_pull(merged_pull()).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path(format!("{PULLS}/2/merge")))
        .and(body_partial_json(json!({
            "merge_method": "squash",
            "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "merged": true,
            "message": "Pull Request successfully merged"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let forge = forge(&server).await;
    let status = forge.merge_change_request(&request(), MergeMethod::Squash).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Merged);
    assert_eq!(status.merge_commit.as_deref(), Some("6dcb09b5b57875f334f61aebed695e2e4193db5e"));
    // Merging again reports the merge without a second PUT.
    let again = forge.merge_change_request(&request(), MergeMethod::Squash).await.unwrap();
    assert_eq!(again.state, ChangeRequestState::Merged);
}

#[tokio::test]
async fn merge_conflicts_and_unmergeable_requests() {
    for (status, message, transient) in [
        (409, "Head branch was modified. Review and try the merge again.", true),
        (405, "Pull Request is not mergeable", false),
    ] {
        let server = MockServer::start().await;
        read_pull(pull("pull_request.opened.0")).mount(&server).await;
        Mock::given(method("PUT"))
            .and(path(format!("{PULLS}/2/merge")))
            .respond_with(ResponseTemplate::new(status).set_body_json(error_body(message, status)))
            .mount(&server)
            .await;
        let error = forge(&server).await.merge_change_request(&request(), MergeMethod::Merge).await.unwrap_err();
        assert_eq!(error.is_transient(), transient, "{status}: {error:?}");
        assert!(error.to_string().contains(message), "{error}");
        match status {
            409 => assert!(matches!(error, ForgeError::Conflict { .. })),
            _ => assert!(matches!(error, ForgeError::NotMergeable { .. })),
        }
    }

    // A closed pull request is not merged and says why.
    let server = MockServer::start().await;
    read_pull(pull("pull_request.closed.0")).mount(&server).await;
    let forge = forge(&server).await;
    let status = forge.change_request_status(&request()).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Closed);
    assert_eq!(status.merge_commit, None);
    assert_eq!(status.url.as_deref(), Some("https://github.com/Codertocat/Hello-World/pull/2"));
    let error = forge.merge_change_request(&request(), MergeMethod::Merge).await.unwrap_err();
    assert!(error.to_string().contains("is closed"), "{error}");
}

#[tokio::test]
async fn commit_statuses_are_posted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/Codertocat/Hello-World/statuses/ec26c3e57ca3a959ca5aad62de7213c562f8c821"))
        .and(body_partial_json(json!({
            "state": "success",
            "context": "gantry/gates",
            "description": "all gates passed",
            "target_url": "https://gantry.example/runs/run-1",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1, "state": "success"})))
        .expect(1)
        .mount(&server)
        .await;
    forge(&server)
        .await
        .set_commit_status(
            REPO,
            "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            &CommitStatus {
                state: CommitState::Success,
                context: "gantry/gates".into(),
                description: "all gates passed".into(),
                target_url: Some("https://gantry.example/runs/run-1".into()),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_github_app_exchanges_its_jwt_for_an_installation_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let generated = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("run openssl (scripts/test-deps.sh installs it)");
    assert!(generated.status.success(), "{generated:?}");
    let pem = std::fs::read(&key).unwrap();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .and(wiremock::matchers::header_regex("authorization", r"^Bearer ey[A-Za-z0-9_.-]+$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": "ghs_installation0000000000000000000000",
            "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "permissions": {"pull_requests": "write", "contents": "write"},
            "repository_selection": "selected"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PULLS))
        .and(header("authorization", "Bearer ghs_installation0000000000000000000000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([pull("pull_request.opened.0")])))
        .expect(2)
        .mount(&server)
        .await;
    let forge =
        GitHubForge::new(&server.uri(), GitHubAuth::App { app_id: 7, private_key_pem: pem, installation_id: 42 })
            .unwrap();
    // Two calls, one token: it is cached until it nears expiry.
    for _ in 0..2 {
        let found = forge.find_change_request(REPO, "changes").await.unwrap();
        assert_eq!(found.map(|request| request.id), Some(2));
    }

    let error = GitHubForge::new(
        &server.uri(),
        GitHubAuth::App { app_id: 7, private_key_pem: b"not a key".to_vec(), installation_id: 42 },
    )
    .unwrap_err();
    assert!(matches!(error, ForgeError::Setup { .. }), "{error:?}");
}

#[tokio::test]
async fn unreachable_forges_and_bad_repositories() {
    // A port nothing listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).unwrap().port();
    let uri = format!("http://127.0.0.1:{port}");
    let forge = GitHubForge::new(&uri, GitHubAuth::Token(TOKEN.into())).unwrap();
    let error = forge.find_change_request(REPO, "changes").await.unwrap_err();
    assert!(matches!(error, ForgeError::Transport { .. }), "{error:?}");
    assert!(error.is_transient());
    let error = forge.find_change_request("not a repo", "changes").await.unwrap_err();
    assert!(matches!(error, ForgeError::InvalidRepo { .. }), "{error:?}");
}
