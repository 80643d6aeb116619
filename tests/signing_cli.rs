//! Signing as users meet it: the `gantry sign` / `verify` / `attest` commands, and promotions
//! whose pipeline requires CI's signature before an environment, then signs and attests the
//! image for it — on the embedded OCI layout and on a real `docker-registry`, with keys made by
//! `openssl`, crashes included.

#[path = "support/gantry.rs"]
mod gantry_support;
#[path = "support/registry.rs"]
mod registry_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gantry_engine::git::{Signature, init_bare_repo};
use gantry_engine::registry::{self, Digest, LayoutRegistry, Registry, RegistryAuth, sample_image};
use gantry_engine::supply_chain::{
    PROVENANCE_PREDICATE_TYPE, SignatureCheck, VerificationKey, signature_tag, verify_attestations, verify_signatures,
};
use gantry_support::Gantry;
use registry_support::TestRegistry;
use serde_json::{Value, json};

const FIXTURE: &str = "tests/fixtures/github/octokit-examples/push.4.json";
const SECRET: &str = "it's a secret to everybody";

/// Runs `gantry` with arguments and extra environment; returns (exit code, stdout, stderr).
fn run_gantry(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(gantry_support::binary());
    command.args(args).env("GANTRY_LOG", "warn").env_remove("COSIGN_PASSWORD");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run gantry");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A P-256 key pair written by openssl: `<name>.pem` (PKCS#8) and `<name>.pub` (SPKI).
fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&str]| {
        let output =
            Command::new("openssl").args(args).output().expect("openssl is installed (Debian package `openssl`)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", private.to_str().unwrap()]);
    run(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    (private, public)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn sign_verify_and_attest_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("oci");
    let layout = LayoutRegistry::new(&root);
    let signed = layout.push_image("app", "v1", &sample_image("app", &[])).await.unwrap();
    layout.push_image("app", "v2", &sample_image("app", &[("org.opencontainers.image.revision", "2")])).await.unwrap();
    let (key, public) = openssl_key(dir.path(), "release");
    let (_, stranger) = openssl_key(dir.path(), "stranger");
    let image = format!("oci-layout:{}/app:v1", root.display());

    let (code, stdout, stderr) = run_gantry(&["sign", &image, "--key", path(&key)], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("signed "), "{stdout}");
    assert!(stdout.contains(signed.as_str()), "{stdout}");
    let (code, stdout, _) = run_gantry(&["sign", &image, "--key", path(&key)], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("already signed"), "{stdout}");

    let (code, stdout, stderr) = run_gantry(&["verify", &image, "--key", path(&public)], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("verified "), "{stdout}");
    let (code, stdout, _) = run_gantry(&["verify", &image, "--key", path(&public), "--json"], &[]);
    assert_eq!(code, 0);
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["verified"].as_array().unwrap().len(), 1);

    let (code, _, stderr) = run_gantry(&["verify", &image, "--key", path(&stranger)], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no signature is valid"), "{stderr}");
    let unsigned = format!("oci-layout:{}/app:v2", root.display());
    let (code, _, stderr) = run_gantry(&["verify", &unsigned, "--key", path(&public)], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("the image is not signed"), "{stderr}");

    // cosign's encrypted key format, its password taken from COSIGN_PASSWORD as cosign does.
    let cosign_key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cosign/ecdsa_encrypted_private.key");
    let (code, stdout, stderr) =
        run_gantry(&["sign", &unsigned, "--key", path(&cosign_key)], &[("COSIGN_PASSWORD", "123")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("signed "), "{stdout}");
    let (code, _, stderr) = run_gantry(&["sign", &unsigned, "--key", path(&cosign_key)], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("wrong password"), "{stderr}");

    let predicate = dir.path().join("predicate.json");
    std::fs::write(&predicate, r#"{"scanner": {"uri": "pkg:github/aquasecurity/trivy"}}"#).unwrap();
    let predicate_type = "https://cosign.sigstore.dev/attestation/vuln/v1";
    let (code, stdout, stderr) = run_gantry(
        &["attest", &image, "--predicate", path(&predicate), "--type", predicate_type, "--key", path(&key)],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("attested "), "{stdout}");
    let verified =
        verify_attestations(&layout, "app", &signed, &[VerificationKey::from_file(&public).unwrap()], predicate_type)
            .await
            .unwrap();
    assert_eq!(verified[0].statement.predicate, json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy"}}));

    for (args, hint) in [
        (vec!["sign", "app:v1", "--key", path(&key)], "registry host"),
        (vec!["verify", &image, "--key", path(&key)], "it is a private key"),
        (vec!["attest", &image, "--predicate", path(&key), "--type", "x:y", "--key", path(&key)], "as JSON"),
    ] {
        let (code, _, stderr) = run_gantry(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
}

/// A gantry server promoting Codertocat/Hello-World pushes into `dev` through a pipeline that
/// requires CI's signature, then signs and attests the image with the release key.
struct Promotion {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    config_dir: PathBuf,
    registry: TestRegistry,
    body: Vec<u8>,
    sha: String,
    ci_key: PathBuf,
    ci_public: PathBuf,
    release_public: PathBuf,
    release_pem: String,
}

impl Promotion {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start();
        let (ci_key, ci_public) = openssl_key(dir.path(), "ci");
        let (release_key, release_public) = openssl_key(dir.path(), "release");
        let env_repo = dir.path().join("dev.git");
        init_bare_repo(
            &env_repo,
            "main",
            &[("apps/hello-world/kustomization.yaml", b"images: []\n")],
            &Signature { name: "platform".into(), email: "platform@example.com".into() },
        )
        .unwrap();
        let config_dir = dir.path().join("config");
        // CI's public key sits next to the pipeline, named by a path relative to it.
        std::fs::create_dir_all(config_dir.join("keys")).unwrap();
        std::fs::copy(&ci_public, config_dir.join("keys/ci.pub")).unwrap();
        std::fs::write(
            config_dir.join("gantry.yaml"),
            format!(
                "registries:\n  - name: ci\n    url: http://{registry}\n\
                 apps:\n  - name: hello-world\n    source_repo: Codertocat/Hello-World\n    registry: ci\n    repository: acme/hello-world\n\
                 environments:\n  - name: dev\n    order: 1\n    config_repo:\n      url: file://{repo}\n      path: apps/{{app}}/kustomization.yaml\n\
                 pipelines:\n  - name: default\n    triggers:\n      - on: branch\n        pattern: master\n        environment: dev\n        artifact_tag: sha-{{sha7}}\n        artifact_wait: 30s\n\
                 \x20   steps:\n\
                 \x20     - {{ name: resolve, kind: resolve-artifact }}\n\
                 \x20     - {{ name: ci-signed, kind: verify-signature, needs: [resolve], with: {{ keys: [keys/ci.pub] }} }}\n\
                 \x20     - {{ name: sign, kind: sign, needs: [ci-signed], with: {{ key_env: GANTRY_TEST_RELEASE_KEY, annotations: {{ env: dev }} }} }}\n\
                 \x20     - {{ name: provenance, kind: attest, needs: [sign], with: {{ key: \"{release_key}\" }} }}\n\
                 \x20     - {{ name: provenance-check, kind: verify-attestation, needs: [provenance], with: {{ keys: [\"{release_public}\"] }} }}\n\
                 \x20     - {{ name: retag, kind: retag, needs: [provenance-check] }}\n",
                registry = registry.addr,
                repo = env_repo.display(),
                release_key = release_key.display(),
                release_public = release_public.display(),
            ),
        )
        .unwrap();
        let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)).unwrap();
        let payload: Value = serde_json::from_slice(&body).unwrap();
        let sha = payload["after"].as_str().unwrap().to_string();
        let release_pem = std::fs::read_to_string(&release_key).unwrap();
        Self {
            data_dir: dir.path().join("data"),
            _dir: dir,
            config_dir,
            registry,
            body,
            sha,
            ci_key,
            ci_public,
            release_public,
            release_pem,
        }
    }

    fn start(&self, failpoints: Option<&str>) -> Gantry {
        let mut env = vec![("GANTRY_GITHUB_SECRET", SECRET), ("GANTRY_TEST_RELEASE_KEY", self.release_pem.as_str())];
        if let Some(points) = failpoints {
            env.push(("GANTRY_FAILPOINTS", points));
        }
        std::fs::create_dir_all(&self.data_dir).unwrap();
        Gantry::start("serve", &self.data_dir, &self.config_dir, &env)
    }

    fn registry(&self) -> std::sync::Arc<dyn Registry> {
        registry::open(&self.registry.url(), Path::new("."), RegistryAuth::Anonymous).unwrap()
    }

    /// CI pushes the image for the fixture's commit as `sha-<sha7>`.
    async fn ci_push(&self) -> Digest {
        let image = sample_image("hello-world", &[("org.opencontainers.image.revision", &self.sha)]);
        self.registry().push_image("acme/hello-world", &format!("sha-{}", &self.sha[..7]), &image).await.unwrap()
    }

    /// CI signs it, with the `gantry sign` command.
    fn ci_sign(&self, digest: &Digest) {
        let image = format!("{}/acme/hello-world@{digest}", self.registry.addr);
        let (code, stdout, stderr) = run_gantry(&["sign", &image, "--key", path(&self.ci_key)], &[]);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }

    async fn send(&self, gantry: &Gantry, delivery: &str) {
        let status = reqwest::Client::new()
            .post(format!("{}/hooks/github", gantry.url))
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", gantry_webhooks::github::sign(SECRET.as_bytes(), &self.body))
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
    }

    async fn signature_layers(&self, digest: &Digest) -> usize {
        let registry = self.registry();
        let tag = signature_tag(digest);
        let manifest = registry.resolve("acme/hello-world", &tag).await.unwrap().unwrap();
        let manifest = registry.fetch_manifest("acme/hello-world", &manifest).await.unwrap();
        let document: Value = serde_json::from_slice(&manifest.bytes).unwrap();
        document["layers"].as_array().unwrap().len()
    }

    async fn env_tag(&self) -> Option<Digest> {
        self.registry().resolve("acme/hello-world", &format!("dev-sha-{}", &self.sha[..7])).await.unwrap()
    }
}

async fn runs(gantry: &Gantry) -> Vec<Value> {
    reqwest::get(format!("{}/api/runs", gantry.url)).await.unwrap().json().await.unwrap()
}

/// Waits until there are `count` runs and the newest is finished; returns it in full.
async fn wait_for_final_run(gantry: &Gantry, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = runs(gantry).await;
        if all.len() == count
            && let Some(run) = all.first()
            && ["succeeded", "failed", "cancelled"].contains(&run["state"].as_str().unwrap_or_default())
        {
            let id = run["id"].as_str().unwrap();
            return reqwest::get(format!("{}/api/runs/{id}", gantry.url)).await.unwrap().json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no finished run #{count} within 60s:\n{}", gantry.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_image_is_blocked_and_a_ci_signed_one_is_signed_attested_and_promoted() {
    let setup = Promotion::new();
    let digest = setup.ci_push().await;
    let gantry = setup.start(None);

    setup.send(&gantry, "unsigned").await;
    let run = wait_for_final_run(&gantry, 1).await;
    assert_eq!(run["state"], "failed", "{run:#}");
    let blocked = step(&run, "ci-signed");
    assert_eq!(blocked["state"], "failed", "{blocked:#}");
    assert_eq!(blocked["attempts"], 1, "an unsigned image is not retried: {blocked:#}");
    let reason = blocked["error"].as_str().unwrap_or_default();
    assert!(reason.contains("the image is not signed"), "{blocked:#}");
    assert!(reason.contains(&signature_tag(&digest)), "{blocked:#}");
    assert_ne!(step(&run, "retag")["state"], "succeeded");
    assert_eq!(setup.env_tag().await, None, "nothing may be promoted");

    setup.ci_sign(&digest);
    setup.send(&gantry, "signed").await;
    let run = wait_for_final_run(&gantry, 2).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let verified = &step(&run, "ci-signed")["outputs"]["verified"];
    assert_eq!(verified.as_array().unwrap().len(), 1, "{verified:#}");
    assert_eq!(step(&run, "sign")["outputs"]["result"], "signed");
    assert_eq!(step(&run, "provenance")["outputs"]["result"], "attached");
    assert_eq!(setup.env_tag().await, Some(digest.clone()));

    // CI's signature and the release signature, both verifiable by their own public keys.
    assert_eq!(setup.signature_layers(&digest).await, 2);
    let registry = setup.registry();
    for public in [&setup.ci_public, &setup.release_public] {
        let check = SignatureCheck { keys: vec![VerificationKey::from_file(public).unwrap()], keyless: None };
        let found = verify_signatures(registry.as_ref(), "acme/hello-world", &digest, &check).await.unwrap();
        assert_eq!(found.len(), 1);
    }
    let image = format!("{}/acme/hello-world:dev-sha-{}", setup.registry.addr, &setup.sha[..7]);
    let (code, stdout, stderr) = run_gantry(&["verify", &image, "--key", path(&setup.release_public), "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["verified"][0]["claims"]["env"], "dev");

    // The provenance names the commit, the event and the environment of this promotion.
    let attestations = verify_attestations(
        registry.as_ref(),
        "acme/hello-world",
        &digest,
        &[VerificationKey::from_file(&setup.release_public).unwrap()],
        PROVENANCE_PREDICATE_TYPE,
    )
    .await
    .unwrap();
    assert_eq!(attestations.len(), 1);
    let predicate = &attestations[0].statement.predicate;
    let parameters = &predicate["buildDefinition"]["externalParameters"];
    assert_eq!(parameters["environment"], "dev");
    assert_eq!(parameters["event"]["commit"], setup.sha.as_str());
    assert_eq!(parameters["event"]["repository"], "Codertocat/Hello-World");
    assert_eq!(predicate["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"], setup.sha.as_str());
    assert_eq!(predicate["runDetails"]["metadata"]["invocationId"], run["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_right_after_signing_resumes_without_a_second_signature() {
    let setup = Promotion::new();
    let digest = setup.ci_push().await;
    setup.ci_sign(&digest);

    let mut crashing = setup.start(Some("after-side-effect:sign"));
    setup.send(&crashing, "crash").await;
    let status = crashing.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "gantry should have died after signing");
    assert_eq!(setup.signature_layers(&digest).await, 2);

    let resumed = setup.start(None);
    let run = wait_for_final_run(&resumed, 1).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let sign = step(&run, "sign");
    assert_eq!(sign["attempts"], 2, "{sign:#}");
    assert_eq!(sign["outputs"]["result"], "already-signed");
    assert_eq!(setup.signature_layers(&digest).await, 2);
}
