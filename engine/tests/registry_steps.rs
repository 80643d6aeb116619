//! The registry steps of a pipeline against real `docker-registry` processes on loopback:
//! `retag` promoting inside a repository and from a dev registry into a prod registry that wants
//! basic credentials (read from the configuration's password file), with signatures and
//! attestations carried along and merged; immutable tags from the configuration; and
//! `prune-tags` retention, which never deletes a digest another tag still names.

#[path = "../../tests/support/registry.rs"]
mod registry_support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gantry_engine::error::StoreError;
use gantry_engine::forge::LocalForge;
use gantry_engine::history::{PastPromotion, PromotionHistory};
use gantry_engine::registry::{self, Digest, Registry, RegistryAuth, RegistryError, sample_image};
use gantry_engine::steps::{StepContext, StepError, StepOutcome};
use gantry_engine::supply_chain::{
    PROVENANCE_PREDICATE_TYPE, SignatureCheck, SigningKey, attest_image, attestation_tag, sign_image, signature_tag,
    verify_attestations, verify_signatures,
};
use gantry_engine::{Capabilities, SqliteStore, StepRegistry};
use gantry_webhooks::{EventKind, Forge, GitEvent, RefKind};
use gantry_workflows::{Config, Plan};
use registry_support::TestRegistry;
use serde_json::{Value, json};

/// `htpasswd -nbB ci s3cret-token`.
const HTPASSWD: &str = "ci:$2y$05$pjbImcs4/QyrgZ/vd6GCS.ZGI8lF4E5MJrpId8XTvnurplmN6wDeq\n";
const PASSWORD: &str = "s3cret-token";

/// Environment tags gantry "wrote before", newest first: the store's answer, without a store.
struct History(Mutex<Vec<String>>);

#[async_trait]
impl PromotionHistory for History {
    async fn promotions(&self, _app: &str, _environment: &str, limit: u32) -> Result<Vec<PastPromotion>, StoreError> {
        let tags = self.0.lock().unwrap();
        Ok(tags.iter().take(limit as usize).map(|tag| PastPromotion { tag: tag.clone(), digest: None }).collect())
    }
}

struct World {
    dir: tempfile::TempDir,
    config: Config,
    history: Arc<History>,
}

impl World {
    /// A config directory with `registries` (YAML list items) and one pipeline of `steps`.
    fn new(registries: &str, steps: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("prod-token"), format!("{PASSWORD}\n")).unwrap();
        let yaml = format!(
            "registries:\n{registries}\
             apps:\n  - name: web\n    source_repo: acme/web\n    registry: dev\n    repository: team/web\n\
             environments:\n  - name: prod\n    order: 1\n    config_repo:\n      url: repos/prod.git\n      \
             path: apps/{{app}}/values.yaml\n      yaml_path: image.tag\n\
             pipelines:\n  - name: default\n    triggers:\n      - on: tag\n        pattern: v*\n        \
             environment: prod\n        artifact_tag: \"{{tag}}\"\n    steps:\n{steps}"
        );
        std::fs::write(config_dir.join("gantry.yaml"), yaml).unwrap();
        let config = gantry_workflows::load_dir(&config_dir, &StepRegistry::builtin())
            .unwrap_or_else(|errors| panic!("config: {errors:#?}"));
        World { dir, config, history: Arc::new(History(Mutex::new(Vec::new()))) }
    }

    /// The plan a push of tag `version` starts.
    fn plan(&self, version: &str) -> Plan {
        let mut event = GitEvent::new(Forge::Github, EventKind::Tag, "acme/web");
        event.ref_kind = Some(RefKind::Tag);
        event.ref_name = Some(version.to_owned());
        event.sha = Some("0123456789abcdef0123456789abcdef01234567".to_owned());
        gantry_workflows::plan(&self.config, &event).unwrap().into_iter().next().expect("the tag plans a promotion")
    }

    async fn capabilities(&self) -> Arc<Capabilities> {
        let store = Arc::new(SqliteStore::open(&self.dir.path().join("gantry.db")).await.unwrap());
        let specs: Vec<_> = self.config.registries.iter().map(|(spec, _)| spec.clone()).collect();
        Arc::new(
            Capabilities::new(self.dir.path(), Arc::new(LocalForge::new(store)), None)
                .with_config_dir(&self.dir.path().join("config"))
                .with_registries(&specs)
                .with_history(self.history.clone()),
        )
    }

    /// Runs step `name` of the plan for `version` with the artifact pinned at `digest`.
    async fn run(&self, version: &str, name: &str, digest: &Digest) -> Result<StepOutcome, StepError> {
        let plan = self.plan(version);
        let planned = plan.steps.iter().find(|step| step.name == name).unwrap().clone();
        let now = gantry_engine::model::now_millis();
        let ctx = StepContext {
            run_id: format!("run-{version}"),
            step: planned.name.clone(),
            attempt: 1,
            config: planned.with.clone(),
            plan,
            digest: Some(digest.to_string()),
            run_created_at: now,
            outputs: serde_json::Map::new(),
            progress: None,
            started_at: now,
            capabilities: self.capabilities().await,
        };
        StepRegistry::builtin().get(&planned.kind).unwrap().run(&ctx).await
    }
}

fn outputs(outcome: StepOutcome) -> Value {
    match outcome {
        StepOutcome::Succeeded { outputs, .. } => outputs,
        other => panic!("expected success, got {other:?}"),
    }
}

fn anonymous(server: &TestRegistry) -> Arc<dyn Registry> {
    registry::open(&server.url(), Path::new("."), RegistryAuth::Anonymous).unwrap()
}

fn authenticated(server: &TestRegistry) -> Arc<dyn Registry> {
    let auth = RegistryAuth::Basic { username: "ci".into(), password: PASSWORD.into() };
    registry::open(&server.url(), Path::new("."), auth).unwrap()
}

#[tokio::test]
async fn retag_promotes_into_a_prod_registry_with_credentials_and_brings_signatures_along() {
    let dev = TestRegistry::start();
    let prod = TestRegistry::start_with_htpasswd(HTPASSWD);
    let world = World::new(
        &format!(
            "  - name: dev\n    url: {}\n  - name: prod\n    url: {}\n    credentials:\n      username: ci\n      \
             password_file: prod-token\n",
            dev.url(),
            prod.url()
        ),
        "      - name: promote\n        kind: retag\n        with:\n          registry: prod\n          repository: web\n",
    );
    let dev_registry = anonymous(&dev);
    let prod_registry = authenticated(&prod);
    let digest = dev_registry.push_image("team/web", "v1.5.0", &sample_image("web", &[("rev", "1")])).await.unwrap();

    // CI signed and attested in dev; prod already holds the image (an earlier mirror) with a
    // signature of its own, which must survive the promotion.
    let ci_key = SigningKey::generate().unwrap();
    let prod_key = SigningKey::generate().unwrap();
    sign_image(dev_registry.as_ref(), "team/web", &digest, &ci_key, None).await.unwrap();
    attest_image(
        dev_registry.as_ref(),
        "team/web",
        &digest,
        &ci_key,
        PROVENANCE_PREDICATE_TYPE,
        json!({"buildDefinition": {}}),
    )
    .await
    .unwrap();
    let mirror = registry::Location::new(dev_registry.as_ref(), "team/web");
    let prod_web = registry::Location::new(prod_registry.as_ref(), "web");
    registry::promote(&mirror, &prod_web, &digest, "mirror").await.unwrap();
    sign_image(prod_registry.as_ref(), "web", &digest, &prod_key, None).await.unwrap();

    let out = outputs(world.run("v1.5.0", "promote", &digest).await.unwrap());
    assert_eq!(out["result"], "created", "{out:#}");
    assert_eq!(out["strategy"], "copy", "{out:#}");
    assert_eq!(out["image"], format!("{}/web:prod-v1.5.0", prod.addr));
    let attachments = out["attachments"].as_array().unwrap();
    let result_of = |tag: String| attachments.iter().find(|a| a["tag"] == tag.as_str()).map(|a| a["result"].clone());
    assert_eq!(result_of(signature_tag(&digest)), Some(json!("merged")), "{out:#}");
    assert_eq!(result_of(attestation_tag(&digest)), Some(json!("copied")), "{out:#}");
    assert_eq!(prod_registry.resolve("web", "prod-v1.5.0").await.unwrap(), Some(digest.clone()));

    // Both signers verify in prod, and the attestation came along intact.
    let check =
        SignatureCheck { keys: vec![ci_key.public_key().clone(), prod_key.public_key().clone()], keyless: None };
    let signatures = verify_signatures(prod_registry.as_ref(), "web", &digest, &check).await.unwrap();
    assert_eq!(signatures.len(), 2, "{signatures:#?}");
    let attested = verify_attestations(
        prod_registry.as_ref(),
        "web",
        &digest,
        &[ci_key.public_key().clone()],
        PROVENANCE_PREDICATE_TYPE,
    )
    .await
    .unwrap();
    assert_eq!(attested.len(), 1);

    // Again: nothing left to write.
    let out = outputs(world.run("v1.5.0", "promote", &digest).await.unwrap());
    assert_eq!(out["result"], "already-present", "{out:#}");
    assert!(out["attachments"].as_array().unwrap().iter().all(|a| a["result"] == "already-present"), "{out:#}");

    // The credentials did matter: prod refuses anonymous reads.
    let refused = anonymous(&prod).resolve("web", "prod-v1.5.0").await.unwrap_err();
    assert!(matches!(refused, RegistryError::Distribution { status: Some(401), .. }), "{refused:?}");
}

#[tokio::test]
async fn a_missing_password_file_fails_the_step_with_the_registry_named() {
    let dev = TestRegistry::start();
    let world = World::new(
        &format!(
            "  - name: dev\n    url: {}\n  - name: prod\n    url: http://127.0.0.1:1\n    credentials:\n      \
             username: ci\n      password_file: no-such-file\n",
            dev.url()
        ),
        "      - name: promote\n        kind: retag\n        with:\n          registry: prod\n",
    );
    let digest = anonymous(&dev).push_image("team/web", "v1", &sample_image("web", &[])).await.unwrap();
    let error = world.run("v1", "promote", &digest).await.unwrap_err();
    assert!(matches!(error, StepError::Terminal { .. }), "{error:?}");
    assert!(error.to_string().contains("credentials of registry prod"), "{error}");
    assert!(error.to_string().contains("no-such-file"), "{error}");
}

#[tokio::test]
async fn immutable_tags_from_the_configuration_are_never_moved() {
    let dev = TestRegistry::start();
    let world = World::new(
        &format!("  - name: dev\n    url: {}\n    immutable_tags: [\"team/*\"]\n", dev.url()),
        "      - name: promote\n        kind: retag\n",
    );
    let registry = anonymous(&dev);
    let first = registry.push_image("team/web", "v1", &sample_image("web", &[("rev", "1")])).await.unwrap();
    let second = registry.push_image("team/web", "v1-rebuilt", &sample_image("web", &[("rev", "2")])).await.unwrap();

    let out = outputs(world.run("v1", "promote", &first).await.unwrap());
    assert_eq!((out["result"].as_str(), out["strategy"].as_str()), (Some("created"), Some("retag")), "{out:#}");
    let error = world.run("v1", "promote", &second).await.unwrap_err();
    assert!(matches!(error, StepError::Terminal { .. }), "{error:?}");
    assert!(error.to_string().contains("immutable"), "{error}");
    assert_eq!(registry.resolve("team/web", "prod-v1").await.unwrap(), Some(first));
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_image_and_its_other_tags() {
    let server = TestRegistry::start();
    let registry = anonymous(&server);
    let digest = registry.push_image("app", "a", &sample_image("app", &[])).await.unwrap();
    registry.push_image("app", "b", &sample_image("app", &[])).await.unwrap();

    // docker-registry 2.x deletes by digest only: the tag is moved to a placeholder first.
    assert!(registry.delete_tag("app", "a").await.unwrap());
    assert_eq!(registry.resolve("app", "a").await.unwrap(), None);
    assert_eq!(registry.resolve("app", "b").await.unwrap(), Some(digest.clone()));
    assert!(registry.manifest_exists("app", &digest).await.unwrap());
    assert_eq!(registry.list_tags("app").await.unwrap(), vec!["b".to_owned()]);
    assert!(!registry.delete_tag("app", "a").await.unwrap());

    assert!(registry.delete_manifest("app", &digest).await.unwrap());
    assert_eq!(registry.resolve("app", "b").await.unwrap(), None);
    assert!(!registry.manifest_exists("app", &digest).await.unwrap());
    assert!(!registry.delete_manifest("app", &digest).await.unwrap());

    // The same contract for an image layout.
    let root = tempfile::tempdir().unwrap();
    let layout: Arc<dyn Registry> = Arc::new(registry::LayoutRegistry::new(root.path()));
    let digest = layout.push_image("app", "a", &sample_image("app", &[])).await.unwrap();
    layout.push_image("app", "b", &sample_image("app", &[])).await.unwrap();
    assert!(layout.delete_tag("app", "a").await.unwrap());
    assert_eq!(layout.list_tags("app").await.unwrap(), vec!["b".to_owned()]);
    assert!(layout.manifest_exists("app", &digest).await.unwrap());
    assert!(layout.delete_manifest("app", &digest).await.unwrap());
    assert!(layout.list_tags("app").await.unwrap().is_empty());
    assert!(!layout.manifest_exists("app", &digest).await.unwrap());
}

#[tokio::test]
async fn prune_tags_keeps_the_last_n_and_never_deletes_a_digest_another_tag_names() {
    let server = TestRegistry::start();
    let world = World::new(
        &format!("  - name: dev\n    url: {}\n", server.url()),
        "      - name: promote\n        kind: retag\n      - name: prune\n        kind: prune-tags\n        \
         needs: [promote]\n        with:\n          keep: 1\n",
    );
    let registry = anonymous(&server);
    let mut digests = Vec::new();
    for version in 1..=4 {
        let image = sample_image("web", &[("rev", &version.to_string())]);
        digests.push(registry.push_image("team/web", &format!("prod-v{version}"), &image).await.unwrap());
    }
    // CI's tag still names v2's image, staging's tag v1's; v3's image is signed.
    registry.push_image("team/web", "v2", &sample_image("web", &[("rev", "2")])).await.unwrap();
    registry.push_image("team/web", "staging-v1", &sample_image("web", &[("rev", "1")])).await.unwrap();
    sign_image(registry.as_ref(), "team/web", &digests[2], &SigningKey::generate().unwrap(), None).await.unwrap();
    *world.history.0.lock().unwrap() = vec!["prod-v3".into(), "prod-v2".into(), "prod-v1".into()];

    let out = outputs(world.run("v4", "prune", &digests[3]).await.unwrap());
    assert_eq!(out["kept"], json!(["prod-v4"]), "{out:#}");
    // v3's image and the manifest of its signature tag.
    let deleted = out["deleted_digests"].as_array().unwrap();
    assert_eq!((deleted.len(), &deleted[0]), (2, &json!(digests[2].to_string())), "{out:#}");
    let tags = registry.list_tags("team/web").await.unwrap();
    assert_eq!(tags, vec!["prod-v4".to_owned(), "staging-v1".to_owned(), "v2".to_owned()], "{out:#}");
    // Expired tags whose image another tag names lost only the tag.
    assert!(registry.manifest_exists("team/web", &digests[0]).await.unwrap());
    assert!(registry.manifest_exists("team/web", &digests[1]).await.unwrap());
    // The image nothing else named is gone, with its signature.
    assert!(!registry.manifest_exists("team/web", &digests[2]).await.unwrap());
    assert_eq!(registry.resolve("team/web", &signature_tag(&digests[2])).await.unwrap(), None);
    assert!(registry.manifest_exists("team/web", &digests[3]).await.unwrap());

    // Again: nothing is left to delete.
    let out = outputs(world.run("v4", "prune", &digests[3]).await.unwrap());
    assert_eq!(out["deleted_tags"], json!([]), "{out:#}");
    assert_eq!(registry.list_tags("team/web").await.unwrap(), tags);
}

#[test]
fn prune_tags_settings_are_checked() {
    let steps = StepRegistry::builtin();
    let prune = steps.get("prune-tags").unwrap();
    assert!(prune.check_config(&json!({"keep": 3})).is_empty());
    assert_eq!(prune.check_config(&json!({"keep": 0}))[0].0, "keep");
    assert_eq!(prune.check_config(&json!({"keep": 3, "repository": "Team/Web"}))[0].0, "repository");
    assert!(prune.check_config(&json!({"kept": 3}))[0].1.contains("unknown field"));
    let retag = steps.get("retag").unwrap();
    assert!(retag.check_config(&Value::Null).is_empty());
    assert!(retag.check_config(&json!({"registry": "prod", "repository": "web", "attachments": false})).is_empty());
    assert_eq!(retag.check_config(&json!({"registry": " "}))[0].0, "registry");
}
