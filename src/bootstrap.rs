//! `gantry up`'s embedded defaults: env repos, a local OCI registry with a sample image, and a
//! webhook secret, created under the data directory when absent (never overwritten).

use std::path::{Path, PathBuf};

use anyhow::Context;
use gantry_engine::capabilities::resolve_repo_url;
use gantry_engine::git::{self, Signature};
use gantry_engine::registry::{self, RegistryAuth};
use gantry_workflows::Config;
use rand::RngCore;

/// File holding the GitHub webhook secret, inside the data directory.
pub const SECRET_FILE: &str = "github-webhook-secret";

/// What the bootstrap created or found.
#[derive(Debug, Default)]
pub struct Bootstrapped {
    /// Environment repositories created now.
    pub created_repos: Vec<PathBuf>,
    /// Whether the secret was created now.
    pub created_secret: bool,
}

/// Reads the webhook secret of a data directory, creating a random one if absent.
pub fn ensure_secret(data_dir: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let path = data_dir.join(SECRET_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((text.trim().as_bytes().to_vec(), false));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, &secret).with_context(|| format!("write {}", path.display()))?;
    Ok((secret.into_bytes(), true))
}

/// Reads the webhook secret of a data directory.
pub fn read_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(SECRET_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("read the webhook secret {} (run `gantry up` first, or set GANTRY_GITHUB_SECRET)", path.display())
    })?;
    Ok(text.trim().as_bytes().to_vec())
}

/// Creates whatever the configuration needs locally and does not exist yet.
pub async fn bootstrap(data_dir: &Path, config: &Config) -> anyhow::Result<Bootstrapped> {
    std::fs::create_dir_all(data_dir)?;
    let mut done = Bootstrapped { created_secret: ensure_secret(data_dir)?.1, ..Default::default() };
    let author = Signature { name: "gantry".into(), email: "gantry@localhost".into() };
    for (env, _) in &config.environments {
        let url = resolve_repo_url(data_dir, &env.config_repo.url);
        if url.contains("://") || Path::new(&url).exists() {
            continue;
        }
        let files: Vec<(String, String)> = config
            .apps
            .iter()
            .map(|(app, _)| {
                let path = env.config_repo.path.replace("{app}", &app.name).replace("{env}", &env.name);
                let content = match &env.config_repo.yaml_path {
                    Some(yaml_path) => helm_values(&app.name, app.image_name(), &env.name, yaml_path),
                    None => kustomization(&app.name, app.image_name(), &env.name),
                };
                (path, content)
            })
            .collect();
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())).collect();
        git::init_bare_repo(Path::new(&url), &env.config_repo.branch, &files, &author)
            .with_context(|| format!("create the {} config repo at {url}", env.name))?;
        done.created_repos.push(PathBuf::from(url));
    }
    for (registry_spec, _) in &config.registries {
        if !registry_spec.url.starts_with("oci-layout:") {
            continue;
        }
        let registry = registry::open(&registry_spec.url, data_dir, RegistryAuth::Anonymous)?;
        for (app, _) in config.apps.iter().filter(|(a, _)| a.registry == registry_spec.name) {
            if registry.resolve(&app.repository, "latest").await?.is_none() {
                let image = registry::sample_image(&app.name, &[("org.opencontainers.image.title", &app.name)]);
                registry.push_image(&app.repository, "latest", &image).await?;
            }
        }
    }
    Ok(done)
}

fn kustomization(app: &str, image: &str, env: &str) -> String {
    format!(
        "# {app} in {env}: the image tag below is promoted by gantry; everything else is yours.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         namespace: {app}-{env}\n\
         resources:\n\
         \x20 - deployment.yaml   # the app's manifests live beside this file\n\
         \x20 - service.yaml\n\
         images:\n\
         \x20 - name: {image}\n\
         \x20   newTag: initial # promoted by gantry\n\
         commonLabels:\n\
         \x20 app.kubernetes.io/part-of: {app}\n"
    )
}

fn helm_values(app: &str, image: &str, env: &str, yaml_path: &str) -> String {
    if yaml_path == "image.tag" {
        return format!(
            "# Helm values for {app} in {env}.\n\
             replicaCount: 3\n\
             image:\n\
             \x20 repository: {image}\n\
             \x20 tag: \"initial\" # promoted by gantry\n\
             \x20 pullPolicy: IfNotPresent\n\
             resources:\n\
             \x20 limits: {{ cpu: 500m, memory: 256Mi }}\n"
        );
    }
    // Any other path: nest the keys, the value at the leaf.
    let mut text = format!("# Values for {app} in {env}.\n");
    let keys: Vec<&str> = yaml_path.split('.').collect();
    for (depth, key) in keys.iter().enumerate() {
        let indent = "  ".repeat(depth);
        if depth + 1 == keys.len() {
            text.push_str(&format!("{indent}{key}: initial\n"));
        } else {
            text.push_str(&format!("{indent}{key}:\n"));
        }
    }
    text
}
