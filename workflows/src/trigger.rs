//! Trigger matching: whether one trigger accepts one event, and why not.
//!
//! A trigger accepts an event when, in this order: the event is a push, tag or branch deletion;
//! the ref kind and glob match; the forge matches; the actor passes `actors` and
//! `ignore_actors`; and at least one changed file passes `paths` and `ignore_paths`. A branch
//! deletion only ever matches `preview: true` triggers (it ends the preview) and skips the
//! actor and path filters: whoever deletes the branch, the preview goes with it.
//!
//! Path filters only know the files the payload lists. Forges list no files for a new branch
//! at an existing commit and cut long commit lists, so when the list is not known to be whole
//! and no listed file is relevant, the trigger matches anyway and says so in a note that the
//! plan carries: a promotion too many is visible and cheap, one too few is silent.
//!
//! Preview environments are named `<environment>-<slug>`, where the slug is the branch name
//! made safe for directory names, registry tags and Kubernetes names ([`slug`]).

use gantry_webhooks::{EventKind, Forge, GitEvent, RefKind};
use serde::Serialize;

use crate::config::{AppSpec, Config, EnvironmentSpec, PipelineSpec, SourceForge, TriggerOn, TriggerSpec};

/// The longest slug [`slug`] returns.
pub const SLUG_MAX_LEN: usize = 40;

/// Whether a trigger accepts an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It does; the notes say what it could not check (they go into the plan).
    Match {
        /// What the match assumed, e.g. that an unlisted file was relevant.
        notes: Vec<String>,
    },
    /// It does not.
    NoMatch {
        /// Why, as a lowercase fragment.
        reason: String,
    },
}

impl Verdict {
    fn no(reason: impl Into<String>) -> Self {
        Verdict::NoMatch { reason: reason.into() }
    }
}

/// How one trigger judged an event, for `gantry plan` and the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerCheck {
    /// App whose pipeline holds the trigger.
    pub app: String,
    /// Pipeline that holds the trigger.
    pub pipeline: String,
    /// The trigger, e.g. `branch feature/*`.
    pub trigger: String,
    /// Position of the trigger in its pipeline's `triggers`.
    pub index: usize,
    /// Entry environment (for a preview, the preview's name).
    pub environment: String,
    /// Whether the trigger starts a run.
    pub matched: bool,
    /// Why it does not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a match assumed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The ref an event is about, as triggers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefEvent<'a> {
    /// Branch or tag.
    pub on: TriggerOn,
    /// Short ref name.
    pub name: &'a str,
    /// The commit, if the event names one.
    pub sha: Option<&'a str>,
    /// Whether the ref was deleted.
    pub deleted: bool,
}

/// The ref a push, tag or deletion is about; why the event starts nothing otherwise.
pub(crate) fn ref_event(event: &GitEvent) -> Result<RefEvent<'_>, String> {
    let on = match event.ref_kind {
        Some(RefKind::Branch) => TriggerOn::Branch,
        Some(RefKind::Tag) => TriggerOn::Tag,
        None => return Err(format!("{} events start no promotion", kind_word(event.kind))),
    };
    let Some(name) = event.ref_name.as_deref() else {
        return Err(format!("the {} event names no ref", kind_word(event.kind)));
    };
    let deleted = match (event.kind, on) {
        (EventKind::Push, TriggerOn::Branch) | (EventKind::Tag, TriggerOn::Tag) => event.deleted,
        (EventKind::Delete, _) => true,
        (kind, _) => return Err(format!("{} events start no promotion", kind_word(kind))),
    };
    Ok(RefEvent { on, name, sha: event.sha.as_deref(), deleted })
}

/// Whether `trigger` accepts `event`, judged on the event alone (see the module documentation).
pub fn check(trigger: &TriggerSpec, event: &GitEvent) -> Verdict {
    let target = match ref_event(event) {
        Ok(target) => target,
        Err(reason) => return Verdict::no(reason),
    };
    if trigger.on != target.on {
        return Verdict::no(format!("listens to {}, not {}", plural(trigger.on), plural(target.on)));
    }
    if !glob_matches(&trigger.pattern, target.name) {
        return Verdict::no(format!("{} `{}` does not match `{}`", on_word(target.on), target.name, trigger.pattern));
    }
    if let Some(forge) = trigger.forge
        && !same_forge(forge, event.forge)
    {
        return Verdict::no(format!(
            "the event comes from {}, the trigger wants {}",
            forge_word(event.forge),
            source_forge_word(forge)
        ));
    }
    if target.deleted {
        return if trigger.preview {
            Verdict::Match { notes: Vec::new() }
        } else {
            Verdict::no(format!(
                "{} `{}` was deleted; a deletion only ends preview environments",
                on_word(target.on),
                target.name
            ))
        };
    }
    if target.sha.is_none() {
        return Verdict::no("the event names no commit (the push that carries the commit starts the promotion)");
    }
    if let Some(reason) = actor_problem(trigger, event.actor.as_deref()) {
        return Verdict::no(reason);
    }
    check_paths(trigger, event)
}

/// Why the actor filters reject `actor`, if they do.
fn actor_problem(trigger: &TriggerSpec, actor: Option<&str>) -> Option<String> {
    if !trigger.actors.is_empty() {
        let Some(actor) = actor else {
            return Some(format!("the event names no actor, and the trigger wants one of {}", list(&trigger.actors)));
        };
        if !trigger.actors.iter().any(|pattern| actor_matches(pattern, actor)) {
            return Some(format!("actor `{actor}` is not one of {}", list(&trigger.actors)));
        }
    }
    if let Some(actor) = actor
        && let Some(pattern) = trigger.ignore_actors.iter().find(|pattern| actor_matches(pattern, actor))
    {
        return Some(format!("actor `{actor}` is ignored (`{pattern}`)"));
    }
    None
}

fn check_paths(trigger: &TriggerSpec, event: &GitEvent) -> Verdict {
    if trigger.paths.is_empty() && trigger.ignore_paths.is_empty() {
        return Verdict::Match { notes: Vec::new() };
    }
    if event.changed_paths.is_empty() {
        return Verdict::Match {
            notes: vec![
                "the payload lists no changed files (a new branch, or more commits than the forge lists): \
                 matched without the path filters"
                    .to_string(),
            ],
        };
    }
    let relevant: Vec<&String> = event
        .changed_paths
        .iter()
        .filter(|path| trigger.paths.is_empty() || trigger.paths.iter().any(|pattern| path_matches(pattern, path)))
        .filter(|path| !trigger.ignore_paths.iter().any(|pattern| path_matches(pattern, path)))
        .collect();
    if !relevant.is_empty() {
        return Verdict::Match { notes: Vec::new() };
    }
    let why = if trigger.paths.is_empty() {
        format!("every changed file is ignored by ignore_paths {}", list(&trigger.ignore_paths))
    } else if trigger.ignore_paths.is_empty() {
        format!("none of the {} changed files matches paths {}", event.changed_paths.len(), list(&trigger.paths))
    } else {
        format!(
            "none of the {} changed files matches paths {} without being ignored by {}",
            event.changed_paths.len(),
            list(&trigger.paths),
            list(&trigger.ignore_paths)
        )
    };
    if event.changed_paths_complete {
        Verdict::no(why)
    } else {
        Verdict::Match {
            notes: vec![format!(
                "the payload lists only part of the pushed commits and {why}: matched because an unlisted commit may \
                 change a relevant file"
            )],
        }
    }
}

/// One trigger of one app's pipeline, judged against an event with the whole config in view.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    /// The app.
    pub app: &'a AppSpec,
    /// The pipeline the trigger belongs to.
    pub pipeline: &'a PipelineSpec,
    /// Position of the trigger in it.
    pub index: usize,
    /// The trigger.
    pub trigger: &'a TriggerSpec,
    /// The entry environment, when it exists.
    pub environment: Option<&'a EnvironmentSpec>,
    /// Name of the run's environment: the entry environment, or its preview.
    pub target_name: String,
    /// The verdict, after the config-level checks.
    pub verdict: Verdict,
}

impl Candidate<'_> {
    /// The trigger as plans and logs name it, e.g. `branch feature/*`.
    pub fn description(&self) -> String {
        describe(self.trigger)
    }
}

/// The trigger as plans and logs name it, e.g. `branch feature/*`.
pub(crate) fn describe(trigger: &TriggerSpec) -> String {
    format!("{} {}", on_word(trigger.on), trigger.pattern)
}

/// Every trigger of the apps whose source repository sent `event`, each with its verdict.
pub(crate) fn candidates<'a>(config: &'a Config, event: &GitEvent) -> Vec<Candidate<'a>> {
    let target = ref_event(event).ok();
    let mut candidates = Vec::new();
    for (app, _) in &config.apps {
        if !app.source_repo.eq_ignore_ascii_case(&event.repo) {
            continue;
        }
        let Some(pipeline) = config.pipeline(&app.pipeline) else {
            continue;
        };
        for (index, trigger) in pipeline.triggers.iter().enumerate() {
            let environment = config.environment(&trigger.environment);
            let preview_of = match (trigger.preview, target) {
                (true, Some(target)) => Some(slug(target.name)),
                _ => None,
            };
            let target_name = match &preview_of {
                Some(slug) => preview_name(&trigger.environment, slug),
                None => trigger.environment.clone(),
            };
            let mut verdict = check(trigger, event);
            if matches!(verdict, Verdict::Match { .. })
                && let Some(reason) = config_problem(config, trigger, environment, &target_name)
            {
                verdict = Verdict::no(reason);
            }
            candidates.push(Candidate { app, pipeline, index, trigger, environment, target_name, verdict });
        }
    }
    candidates
}

/// Why a trigger that accepts the event still cannot plan a run in this config (a config
/// that passed validation only meets the name collision).
fn config_problem(
    config: &Config,
    trigger: &TriggerSpec,
    environment: Option<&EnvironmentSpec>,
    target_name: &str,
) -> Option<String> {
    let Some(environment) = environment else {
        return Some(format!("environment `{}` does not exist", trigger.environment));
    };
    if let Some(name) = &trigger.pipeline
        && config.pipeline(name).is_none()
    {
        return Some(format!("pipeline `{name}` does not exist"));
    }
    if trigger.preview {
        if environment.previews.is_none() {
            return Some(format!("environment `{}` has no `previews`", environment.name));
        }
        if config.environment(target_name).is_some() {
            return Some(format!(
                "the preview would be named `{target_name}`, which is a configured environment; rename the branch"
            ));
        }
    }
    None
}

/// What every trigger of the apps of `event`'s repository makes of it.
pub fn explain(config: &Config, event: &GitEvent) -> Vec<TriggerCheck> {
    candidates(config, event)
        .into_iter()
        .map(|candidate| {
            let (matched, reason, notes) = match &candidate.verdict {
                Verdict::Match { notes } => (true, None, notes.clone()),
                Verdict::NoMatch { reason } => (false, Some(reason.clone()), Vec::new()),
            };
            TriggerCheck {
                app: candidate.app.name.clone(),
                pipeline: candidate.pipeline.name.clone(),
                trigger: candidate.description(),
                index: candidate.index,
                environment: candidate.target_name.clone(),
                matched,
                reason,
                notes,
            }
        })
        .collect()
}

/// A branch or tag name made safe for directory names, registry tags and Kubernetes names:
/// lowercase ASCII letters, digits and single hyphens, no hyphen at either end, at most
/// [`SLUG_MAX_LEN`] characters. Stable: the same name always gives the same slug. A longer name
/// is cut and ends in eight hex digits of a hash of the whole name, so that two long names
/// that differ only at the end still get different slugs.
pub fn slug(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let trimmed = slug.trim_end_matches('-');
    if !trimmed.is_empty() && trimmed.len() <= SLUG_MAX_LEN {
        return trimmed.to_string();
    }
    let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
    let keep = SLUG_MAX_LEN - hash.len() - 1;
    let head = trimmed[..trimmed.len().min(keep)].trim_end_matches('-');
    if head.is_empty() { format!("ref-{hash}") } else { format!("{head}-{hash}") }
}

/// The name of the preview of `environment` for the branch with slug `slug`.
pub fn preview_name(environment: &str, slug: &str) -> String {
    format!("{environment}-{slug}")
}

/// 64-bit FNV-1a: tiny, and fixed forever, which a slug must be (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Whether a ref glob matches a branch or tag name. `*` does not cross `/`, so that
/// `feature/*` does not match `feature/a/b` unless asked to (`feature/**`).
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// Whether a path glob matches a repository path (`*` within a directory, `**` across).
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    glob_matches(pattern, path)
}

/// Whether an actor entry names `actor`, without regard to case: `*` stands for any run of
/// characters and `?` for one; everything else is literal, so that `dependabot[bot]` is a name
/// and not a character class.
pub(crate) fn actor_matches(pattern: &str, actor: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let actor: Vec<char> = actor.chars().flat_map(char::to_lowercase).collect();
    // Classic wildcard matching with one backtrack point: the last `*` seen.
    let (mut p, mut a) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while a < actor.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, a));
                p += 1;
            }
            Some(c) if *c == '?' || *c == actor[a] => {
                p += 1;
                a += 1;
            }
            _ => match star {
                Some((star_p, star_a)) => {
                    p = star_p + 1;
                    a = star_a + 1;
                    star = Some((star_p, star_a + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn same_forge(wanted: SourceForge, actual: Forge) -> bool {
    matches!((wanted, actual), (SourceForge::Github, Forge::Github) | (SourceForge::Gitlab, Forge::Gitlab))
}

fn forge_word(forge: Forge) -> &'static str {
    match forge {
        Forge::Github => "github",
        Forge::Gitlab => "gitlab",
    }
}

fn source_forge_word(forge: SourceForge) -> &'static str {
    match forge {
        SourceForge::Github => "github",
        SourceForge::Gitlab => "gitlab",
    }
}

pub(crate) fn on_word(on: TriggerOn) -> &'static str {
    match on {
        TriggerOn::Branch => "branch",
        TriggerOn::Tag => "tag",
    }
}

fn plural(on: TriggerOn) -> &'static str {
    match on {
        TriggerOn::Branch => "branches",
        TriggerOn::Tag => "tags",
    }
}

fn kind_word(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Push => "push",
        EventKind::Tag => "tag",
        EventKind::Delete => "delete",
        EventKind::Merge => "merge",
        EventKind::Ping => "ping",
        EventKind::Package => "package",
        EventKind::Ci => "ci",
        EventKind::Other => "other",
    }
}

fn list(patterns: &[String]) -> String {
    format!("[{}]", patterns.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(on: TriggerOn, pattern: &str) -> TriggerSpec {
        TriggerSpec {
            on,
            pattern: pattern.into(),
            environment: "dev".into(),
            artifact_tag: "sha-{sha7}".into(),
            version: None,
            artifact_wait: "10m".into(),
            paths: Vec::new(),
            ignore_paths: Vec::new(),
            actors: Vec::new(),
            ignore_actors: Vec::new(),
            forge: None,
            pipeline: None,
            preview: false,
        }
    }

    fn push(branch: &str, paths: &[&str], complete: bool) -> GitEvent {
        GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some(branch.into()),
            sha: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
            actor: Some("Codertocat".into()),
            changed_paths: paths.iter().map(|p| p.to_string()).collect(),
            changed_paths_complete: complete,
            ..GitEvent::new(Forge::Github, EventKind::Push, "acme/shop")
        }
    }

    fn deletion(branch: &str) -> GitEvent {
        GitEvent {
            ref_kind: Some(RefKind::Branch),
            ref_name: Some(branch.into()),
            deleted: true,
            ..GitEvent::new(Forge::Github, EventKind::Delete, "acme/shop")
        }
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::NoMatch { reason } => reason,
            Verdict::Match { notes } => panic!("expected no match, got a match with notes {notes:?}"),
        }
    }

    fn notes(verdict: Verdict) -> Vec<String> {
        match verdict {
            Verdict::Match { notes } => notes,
            Verdict::NoMatch { reason } => panic!("expected a match, got: {reason}"),
        }
    }

    #[test]
    fn ref_kind_and_glob_decide_first() {
        let feature = trigger(TriggerOn::Branch, "feature/*");
        assert!(notes(check(&feature, &push("feature/login", &[], false))).is_empty());
        assert!(reason(check(&feature, &push("feature/a/b", &[], false))).contains("does not match `feature/*`"));
        assert!(reason(check(&trigger(TriggerOn::Tag, "v*"), &push("v1", &[], false))).contains("listens to tags"));
        let mut merge = push("main", &[], false);
        merge.kind = EventKind::Merge;
        assert_eq!(reason(check(&feature, &merge)), "merge events start no promotion");
    }

    #[test]
    fn forge_must_match_when_named() {
        let mut gitlab_only = trigger(TriggerOn::Branch, "main");
        gitlab_only.forge = Some(SourceForge::Gitlab);
        assert_eq!(
            reason(check(&gitlab_only, &push("main", &[], false))),
            "the event comes from github, the trigger wants gitlab"
        );
        let mut event = push("main", &[], false);
        event.forge = Forge::Gitlab;
        assert!(notes(check(&gitlab_only, &event)).is_empty());
    }

    #[test]
    fn path_filters_need_one_relevant_file() {
        let mut api = trigger(TriggerOn::Branch, "main");
        api.paths = vec!["services/api/**".into()];
        api.ignore_paths = vec!["**/*.md".into()];
        assert!(notes(check(&api, &push("main", &["docs/x.md", "services/api/src/main.rs"], true))).is_empty());
        let why = reason(check(&api, &push("main", &["services/web/index.ts"], true)));
        assert!(why.contains("none of the 1 changed files matches paths [`services/api/**`]"), "{why}");
        let why = reason(check(&api, &push("main", &["services/api/README.md"], true)));
        assert!(why.contains("without being ignored by [`**/*.md`]"), "{why}");
        // `*` stays inside one directory.
        let mut shallow = trigger(TriggerOn::Branch, "main");
        shallow.paths = vec!["charts/*".into()];
        assert!(matches!(check(&shallow, &push("main", &["charts/a/values.yaml"], true)), Verdict::NoMatch { .. }));
        assert!(notes(check(&shallow, &push("main", &["charts/Chart.yaml"], true))).is_empty());
    }

    #[test]
    fn ignore_paths_alone_drop_pushes_that_change_only_ignored_files() {
        let mut code = trigger(TriggerOn::Branch, "main");
        code.ignore_paths = vec!["docs/**".into()];
        assert!(reason(check(&code, &push("main", &["docs/a.md"], true))).contains("every changed file is ignored"));
        assert!(notes(check(&code, &push("main", &["docs/a.md", "src/lib.rs"], true))).is_empty());
    }

    #[test]
    fn unknown_or_partial_file_lists_match_conservatively_with_a_note() {
        let mut api = trigger(TriggerOn::Branch, "main");
        api.paths = vec!["services/api/**".into()];
        let said = notes(check(&api, &push("main", &[], false)));
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("lists no changed files"), "{said:?}");
        let said = notes(check(&api, &push("main", &["services/web/a.ts"], false)));
        assert!(said[0].contains("only part of the pushed commits"), "{said:?}");
        // A relevant listed file needs no note, whole list or not.
        assert!(notes(check(&api, &push("main", &["services/api/a.rs"], false))).is_empty());
    }

    #[test]
    fn actor_filters_take_names_and_globs_without_case() {
        let mut releases = trigger(TriggerOn::Branch, "main");
        releases.actors = vec!["alice".into(), "release-*".into()];
        releases.ignore_actors = vec!["dependabot[bot]".into()];
        let by = |actor: Option<&str>| {
            let mut event = push("main", &[], true);
            event.actor = actor.map(str::to_string);
            check(&releases, &event)
        };
        assert!(notes(by(Some("Alice"))).is_empty());
        assert!(notes(by(Some("release-bot"))).is_empty());
        assert_eq!(reason(by(Some("mallory"))), "actor `mallory` is not one of [`alice`, `release-*`]");
        assert!(reason(by(None)).contains("names no actor"));
        let mut bots = trigger(TriggerOn::Branch, "main");
        bots.ignore_actors = vec!["dependabot[bot]".into()];
        let mut event = push("main", &[], true);
        event.actor = Some("dependabot[bot]".into());
        assert_eq!(reason(check(&bots, &event)), "actor `dependabot[bot]` is ignored (`dependabot[bot]`)");
        // `[bot]` as a character class would have matched `dependabott`; as a name it does not.
        event.actor = Some("dependabott".into());
        assert!(notes(check(&bots, &event)).is_empty());
    }

    #[test]
    fn actor_wildcards() {
        assert!(actor_matches("*", "anyone"));
        assert!(actor_matches("release-*", "Release-Bot"));
        assert!(actor_matches("*[bot]", "renovate[bot]"));
        assert!(actor_matches("a*b*c", "axxbyyc"));
        assert!(actor_matches("a?c", "abc"));
        assert!(!actor_matches("a?c", "ac"));
        assert!(!actor_matches("release-*", "pre-release-bot"));
        assert!(!actor_matches("*[bot]", "renovate"));
        assert!(!actor_matches("", "x"));
    }

    #[test]
    fn deletions_only_end_previews_whoever_deletes() {
        let mut preview = trigger(TriggerOn::Branch, "feature/*");
        preview.preview = true;
        preview.actors = vec!["alice".into()];
        preview.paths = vec!["src/**".into()];
        assert!(notes(check(&preview, &deletion("feature/login"))).is_empty());
        let plain = trigger(TriggerOn::Branch, "feature/*");
        assert!(reason(check(&plain, &deletion("feature/login"))).contains("only ends preview environments"));
    }

    #[test]
    fn events_without_a_commit_start_nothing() {
        let mut created = push("main", &[], false);
        created.sha = None;
        assert!(reason(check(&trigger(TriggerOn::Branch, "main"), &created)).contains("names no commit"));
    }

    #[test]
    fn slugs_are_safe_bounded_and_stable() {
        assert_eq!(slug("feature/Login_Page"), "feature-login-page");
        assert_eq!(slug("hotfix//urgent--fix."), "hotfix-urgent-fix");
        assert_eq!(slug("Ünïcode/ß"), "n-code");
        let long = "feature/a-very-long-branch-name-that-keeps-going-and-going";
        let cut = slug(long);
        assert!(cut.len() <= SLUG_MAX_LEN, "{cut}");
        assert!(cut.starts_with("feature-a-very-long-branch-name"), "{cut}");
        assert_eq!(cut, slug(long), "stable");
        assert_ne!(cut, slug("feature/a-very-long-branch-name-that-keeps-going-and-stopping"));
        let odd = slug("___");
        assert!(odd.starts_with("ref-") && odd.len() == 12, "{odd}");
        for name in ["feature/x", long, "___", "UPPER/CASE", "-lead/trail-"] {
            let s = slug(name);
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{s}");
            assert!(!s.starts_with('-') && !s.ends_with('-') && !s.contains("--"), "{s}");
        }
    }
}
