//! Registry settings from the configuration (`registries:`): credentials, plain HTTP and
//! immutable tags, turned into the [`RegistryOptions`] a registry is opened with.
//!
//! Passwords and tokens never sit in the configuration: it names an environment variable or a
//! file, read when the registry is first opened, so that a rotated secret is picked up by the
//! next process without a config change.

use std::path::Path;

use gantry_workflows::config::{RegistryCredentialsSpec, RegistrySpec};

use super::{ImmutableTags, RegistryAuth, RegistryError, RegistryOptions};

/// The options `spec` asks for; relative password files resolve against `config_dir`.
pub fn options_from_spec(spec: &RegistrySpec, config_dir: &Path) -> Result<RegistryOptions, RegistryError> {
    let auth = match &spec.credentials {
        Some(credentials) => credentials_auth(&spec.name, credentials, config_dir)?,
        None => RegistryAuth::Anonymous,
    };
    let insecure_hosts = match (spec.insecure, registry_host(&spec.url)) {
        (true, Some(host)) => vec![host.to_owned()],
        (true, None) => endpoint_host(&spec.url).map(|host| vec![host.to_owned()]).unwrap_or_default(),
        (false, _) => Vec::new(),
    };
    let immutable_tags = ImmutableTags::matching(&spec.immutable_tags).map_err(|reason| RegistryError::InvalidUrl {
        url: spec.url.clone(),
        reason: format!("registry {}: immutable_tags: {reason}", spec.name),
    })?;
    Ok(RegistryOptions { auth, insecure_hosts, immutable_tags, ..RegistryOptions::default() })
}

/// Reads the password or token of `credentials`.
fn credentials_auth(
    registry: &str,
    credentials: &RegistryCredentialsSpec,
    config_dir: &Path,
) -> Result<RegistryAuth, RegistryError> {
    let failed = |reason: String| RegistryError::Credentials { registry: registry.to_owned(), reason };
    let password = match (&credentials.password_env, &credentials.password_file) {
        (Some(variable), None) => std::env::var(variable).map_err(|error| {
            failed(match error {
                std::env::VarError::NotPresent => format!("the environment variable {variable} is not set"),
                std::env::VarError::NotUnicode(_) => format!("the environment variable {variable} is not UTF-8"),
            })
        })?,
        (None, Some(file)) => {
            let path = if file.is_absolute() { file.clone() } else { config_dir.join(file) };
            let text = std::fs::read_to_string(&path)
                .map_err(|error| failed(format!("read the password file {}: {error}", path.display())))?;
            // Files written by `echo` or secret mounts end with a newline that is no part of it.
            text.strip_suffix('\n').map(|rest| rest.strip_suffix('\r').unwrap_or(rest)).unwrap_or(&text).to_owned()
        }
        _ => return Err(failed("name exactly one of password_env and password_file".to_owned())),
    };
    if password.is_empty() {
        return Err(failed("the password or token is empty".to_owned()));
    }
    Ok(RegistryAuth::Basic { username: credentials.username.clone(), password })
}

/// The `host[:port]` of a distribution registry URL (`https://host:port/team` → `host:port`);
/// None for image layouts and ECR.
pub fn registry_host(url: &str) -> Option<&str> {
    let url = url.trim();
    if url.starts_with("oci-layout:") || url.starts_with("ecr://") {
        return None;
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    rest.split('/').next().filter(|host| !host.is_empty())
}

/// The host of the `endpoint` of an ECR URL, which `insecure` lets gantry reach over plain HTTP.
fn endpoint_host(url: &str) -> Option<&str> {
    let query = url.trim().strip_prefix("ecr://")?.split_once('?')?.1;
    let endpoint = query.split('&').find_map(|pair| pair.strip_prefix("endpoint="))?;
    let rest = endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://")).unwrap_or(endpoint);
    rest.split('/').next().filter(|host| !host.is_empty())
}

/// The configured registry a CLI reference's registry (`host:port`, `https://host`,
/// `ecr://host?…`) belongs to: the first whose host is the same, ignoring a namespace.
pub fn spec_for_reference<'a>(specs: &'a [RegistrySpec], reference_registry: &str) -> Option<&'a RegistrySpec> {
    let wanted = host_key(reference_registry)?;
    specs.iter().find(|spec| host_key(&spec.url).is_some_and(|host| host.eq_ignore_ascii_case(&wanted)))
}

/// What identifies a registry host across URL spellings: `host[:port]`, or `ecr://host` for ECR.
fn host_key(url: &str) -> Option<String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("ecr://") {
        let host = rest.split(['?', '/']).next().filter(|host| !host.is_empty())?;
        return Some(format!("ecr://{host}"));
    }
    registry_host(url).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn spec(url: &str) -> RegistrySpec {
        RegistrySpec {
            name: "prod".into(),
            url: url.into(),
            credentials: None,
            insecure: false,
            immutable_tags: Vec::new(),
        }
    }

    #[test]
    fn passwords_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
        let mut from_file = spec("https://registry.example.com");
        from_file.credentials = Some(RegistryCredentialsSpec {
            username: "ci".into(),
            password_env: None,
            password_file: Some(PathBuf::from("token")),
        });
        let options = options_from_spec(&from_file, dir.path()).unwrap();
        assert_eq!(options.auth, RegistryAuth::Basic { username: "ci".into(), password: "t0ken".into() });

        let mut missing = from_file.clone();
        missing.credentials.as_mut().unwrap().password_file = Some(PathBuf::from("absent"));
        let error = options_from_spec(&missing, dir.path()).unwrap_err();
        assert!(error.to_string().contains("registry prod"), "{error}");
        assert!(error.to_string().contains("absent"), "{error}");

        let mut from_env = from_file.clone();
        from_env.credentials = Some(RegistryCredentialsSpec {
            username: "ci".into(),
            password_env: Some("GANTRY_TEST_UNSET_42".into()),
            password_file: None,
        });
        let error = options_from_spec(&from_env, dir.path()).unwrap_err();
        assert!(error.to_string().contains("GANTRY_TEST_UNSET_42 is not set"), "{error}");
    }

    #[test]
    fn insecure_names_the_host_and_immutable_tags_the_repositories() {
        let mut insecure = spec("registry.internal:5000/team");
        insecure.insecure = true;
        insecure.immutable_tags = vec!["prod/*".into()];
        let options = options_from_spec(&insecure, Path::new(".")).unwrap();
        assert_eq!(options.insecure_hosts, vec!["registry.internal:5000".to_owned()]);
        assert!(options.immutable_tags.applies_to("prod/app"));
        assert!(!options.immutable_tags.applies_to("dev/app"));

        let mut ecr = spec("ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=http://10.0.0.5:5000");
        ecr.insecure = true;
        assert_eq!(options_from_spec(&ecr, Path::new(".")).unwrap().insecure_hosts, vec!["10.0.0.5:5000".to_owned()]);
    }

    #[test]
    fn references_find_their_registry_by_host() {
        let specs = vec![
            spec("oci-layout:images"),
            spec("https://harbor.example.com/team"),
            spec("ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
        ];
        assert_eq!(spec_for_reference(&specs, "harbor.example.com").unwrap().url, specs[1].url);
        assert_eq!(spec_for_reference(&specs, "https://HARBOR.example.com").unwrap().url, specs[1].url);
        assert_eq!(
            spec_for_reference(
                &specs,
                "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com?endpoint=http://127.0.0.1:1"
            )
            .unwrap()
            .url,
            specs[2].url
        );
        assert!(spec_for_reference(&specs, "harbor.example.com:5000").is_none());
        assert!(spec_for_reference(&specs, "oci-layout:/srv/oci").is_none());
    }
}
