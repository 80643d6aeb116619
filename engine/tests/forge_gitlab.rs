//! The GitLab forge against an HTTP fake that replays the shapes of GitLab's merge request
//! API (docs: `api/merge_requests.md`, `api/merge_request_approvals.md`, `api/commits.md`,
//! "Rate limits"): a merge request object with the fields gantry reads, the documented 409
//! for a second merge request on a branch, 405/406 for unmergeable ones, 429 with
//! `Retry-After`.

use std::time::Duration;

use gantry_engine::forge::{
    ChangeRequestDraft, ChangeRequestState, CommitState, CommitStatus, Forge, ForgeError, GitLabForge, MergeMethod,
    ReviewOptions,
};
use gantry_engine::model::ChangeRequest;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "https://gitlab.example.com/platform/envs/prod.git";
const PROJECT: &str = "/api/v4/projects/platform%2Fenvs%2Fprod";
const BRANCH: &str = "gantry/prod/web/6f11ad3c9450";
const HEAD: &str = "af5b13261899fb2c0db30abdd0af8b07cb44fdc5";
const TOKEN: &str = "glpat-gantrytest000000000";

/// A merge request as `GET /projects/:id/merge_requests/:iid` documents it (the fields gantry
/// reads, with the documented names and value types).
fn merge_request(state: &str) -> Value {
    let merged = state == "merged";
    json!({
        "id": 84,
        "iid": 12,
        "project_id": 3,
        "title": "Promote web 1.4.2 to prod",
        "description": "gantry promotes `web`",
        "state": state,
        "created_at": "2026-01-02T03:04:05.000Z",
        "updated_at": "2026-01-02T03:04:05.000Z",
        "merged_at": if merged { json!("2026-01-02T04:00:00.000Z") } else { Value::Null },
        "target_branch": "main",
        "source_branch": BRANCH,
        "draft": false,
        "work_in_progress": false,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "sha": HEAD,
        "merge_commit_sha": if merged { json!("9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b") } else { Value::Null },
        "squash_commit_sha": Value::Null,
        "web_url": "https://gitlab.example.com/platform/envs/prod/-/merge_requests/12",
        "head_pipeline": {"id": 77, "sha": HEAD, "ref": BRANCH, "status": "success"},
        "references": {"short": "!12", "relative": "!12", "full": "platform/envs/prod!12"}
    })
}

fn draft() -> ChangeRequestDraft {
    ChangeRequestDraft {
        repo: REPO.into(),
        branch: BRANCH.into(),
        base: "main".into(),
        head_commit: HEAD.into(),
        title: "Promote web 1.4.2 to prod".into(),
        body: "gantry promotes `web`".into(),
        run_id: "run-9".into(),
        review: ReviewOptions::default(),
    }
}

fn request() -> ChangeRequest {
    ChangeRequest {
        id: 12,
        forge: "gitlab".into(),
        repo: REPO.into(),
        branch: BRANCH.into(),
        base: "main".into(),
        head_commit: HEAD.into(),
        title: String::new(),
        body: String::new(),
        run_id: "run-9".into(),
        state: "open".into(),
        created_at: 0,
    }
}

fn forge(server: &MockServer) -> GitLabForge {
    GitLabForge::new(&server.uri(), TOKEN).unwrap()
}

fn find(answer: Value) -> Mock {
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .and(query_param("source_branch", BRANCH))
        .and(query_param("state", "all"))
        .and(header("private-token", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
}

fn read(answer: Value) -> Mock {
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests/12")))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
}

#[tokio::test]
async fn opens_a_merge_request_with_labels_reviewers_and_draft() {
    let server = MockServer::start().await;
    find(json!([])).expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v4/users"))
        .and(query_param("username", "alice"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 501, "username": "alice"}])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .and(body_partial_json(json!({
            "source_branch": BRANCH,
            "target_branch": "main",
            "title": "Draft: Promote web 1.4.2 to prod",
            "description": "gantry promotes `web`",
            "labels": "promotion,prod",
            "reviewer_ids": [501],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(merge_request("opened")))
        .expect(1)
        .mount(&server)
        .await;
    let mut draft = draft();
    draft.review = ReviewOptions {
        labels: vec!["promotion".into(), "prod".into()],
        reviewers: vec!["alice".into()],
        draft: true,
        auto_merge: None,
    };
    let (request, opened) = forge(&server).open_change_request(&draft).await.unwrap();
    assert!(opened);
    assert_eq!(request.id, 12);
    assert_eq!(request.branch, BRANCH);
    assert_eq!(request.head_commit, HEAD);
    assert_eq!(request.state, "open");
}

#[tokio::test]
async fn an_existing_merge_request_is_reused_and_a_409_race_finds_it() {
    let server = MockServer::start().await;
    find(json!([merge_request("opened")])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let (request, opened) = forge(&server).open_change_request(&draft()).await.unwrap();
    assert!(!opened);
    assert_eq!(request.id, 12);

    let server = MockServer::start().await;
    find(json!([])).up_to_n_times(1).mount(&server).await;
    find(json!([merge_request("opened")])).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "message": [format!("Another open merge request already exists for this source branch: !12")]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (request, opened) = forge(&server).open_change_request(&draft()).await.unwrap();
    assert!(!opened);
    assert_eq!(request.id, 12);
}

#[tokio::test]
async fn status_reads_approvals_and_the_pipeline() {
    let server = MockServer::start().await;
    read(merge_request("opened")).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests/12/approvals")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "iid": 12, "approved": false, "approvals_required": 1, "approvals_left": 1,
            "approved_by": []
        })))
        .mount(&server)
        .await;
    let status = forge(&server).change_request_status(&request()).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Open);
    assert_eq!(status.approved, Some(false));
    assert_eq!(status.checks.as_deref(), Some("success"));
    assert_eq!(status.url.as_deref(), Some("https://gitlab.example.com/platform/envs/prod/-/merge_requests/12"));

    Mock::given(method("POST"))
        .and(path(format!("{PROJECT}/merge_requests/12/approve")))
        .and(body_partial_json(json!({"sha": HEAD})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"iid": 12, "approved": true})))
        .expect(1)
        .mount(&server)
        .await;
    forge(&server).approve(&request()).await.unwrap();
}

#[tokio::test]
async fn merging_and_its_refusals() {
    let server = MockServer::start().await;
    read(merge_request("opened")).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path(format!("{PROJECT}/merge_requests/12/merge")))
        .and(body_partial_json(json!({"sha": HEAD, "squash": true})))
        .respond_with(ResponseTemplate::new(200).set_body_json(merge_request("merged")))
        .expect(1)
        .mount(&server)
        .await;
    let status = forge(&server).merge_change_request(&request(), MergeMethod::Squash).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Merged);
    assert_eq!(status.merge_commit.as_deref(), Some("9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"));

    for (code, body, transient) in [
        (409, json!({"message": "SHA does not match HEAD of source branch: 1234"}), true),
        (405, json!({"message": "405 Method Not Allowed"}), false),
        (406, json!({"message": "Branch cannot be merged"}), false),
    ] {
        let server = MockServer::start().await;
        read(merge_request("opened")).mount(&server).await;
        Mock::given(method("PUT"))
            .and(path(format!("{PROJECT}/merge_requests/12/merge")))
            .respond_with(ResponseTemplate::new(code).set_body_json(body))
            .mount(&server)
            .await;
        let error = forge(&server).merge_change_request(&request(), MergeMethod::Merge).await.unwrap_err();
        assert_eq!(error.is_transient(), transient, "{code}: {error:?}");
        if code == 409 {
            assert!(matches!(error, ForgeError::Conflict { .. }), "{error:?}");
        } else {
            assert!(matches!(error, ForgeError::NotMergeable { .. }), "{error:?}");
        }
    }

    // Closed without merge: reported, and never merged.
    let server = MockServer::start().await;
    read(merge_request("closed")).mount(&server).await;
    let status = forge(&server).change_request_status(&request()).await.unwrap();
    assert_eq!(status.state, ChangeRequestState::Closed);
    assert!(forge(&server).merge_change_request(&request(), MergeMethod::Merge).await.is_err());
}

#[tokio::test]
async fn rate_limits_and_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .insert_header("ratelimit-remaining", "0")
                .set_body_string("Retry later\n"),
        )
        .mount(&server)
        .await;
    let error = forge(&server).find_change_request(REPO, BRANCH).await.unwrap_err();
    assert!(matches!(error, ForgeError::RateLimited { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "401 Unauthorized"})))
        .mount(&server)
        .await;
    let error = forge(&server).find_change_request(REPO, BRANCH).await.unwrap_err();
    assert!(!error.is_transient());
    assert!(error.to_string().contains("401 Unauthorized"), "{error}");

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{PROJECT}/merge_requests")))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let error = forge(&server).find_change_request(REPO, BRANCH).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");

    assert!(GitLabForge::new("gitlab.example.com", TOKEN).is_err());
    assert!(GitLabForge::new("https://gitlab.example.com", "bad\ntoken").is_err());
}

#[tokio::test]
async fn commit_statuses_are_posted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{PROJECT}/statuses/{HEAD}")))
        .and(body_partial_json(json!({
            "state": "failed",
            "name": "gantry/gates",
            "description": "2 critical findings",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 93, "status": "failed"})))
        .expect(1)
        .mount(&server)
        .await;
    forge(&server)
        .set_commit_status(
            REPO,
            HEAD,
            &CommitStatus {
                state: CommitState::Failure,
                context: "gantry/gates".into(),
                description: "2 critical findings".into(),
                target_url: None,
            },
        )
        .await
        .unwrap();
}
