//! Checks of single annotation values: names, modes, intervals, reserved names.

use super::*;

/// Most checked bytes the template cache keeps before it starts over.
const TEMPLATE_CACHE_BYTES: usize = 4 << 20;

/// [`render::check`] (every problem of the template), remembered by (template name,
/// declared secret names, source): the check is pure, and the pods of one workload
/// repeat the same templates, so each distinct one is parsed and checked once. Bounded
/// to [`TEMPLATE_CACHE_BYTES`] of keys and messages; when full it is emptied, so a
/// flood of distinct templates costs what it would cost without the cache.
pub(super) fn check_template(
    name: &str,
    src: &str,
    declared: &BTreeSet<String>,
) -> Result<(), Vec<String>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = (usize, HashMap<String, Result<(), Vec<String>>>);
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    // NUL cannot occur in a secret name or an annotation key: the parts cannot run
    // into each other.
    let mut key = String::with_capacity(name.len() + src.len() + 16 * declared.len() + 2);
    key.push_str(name);
    key.push('\0');
    for d in declared {
        key.push_str(d);
        key.push('\0');
    }
    key.push('\0');
    key.push_str(src);
    let cache = CACHE.get_or_init(Default::default);
    let lock = || {
        cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(known) = lock().1.get(&key) {
        return known.clone();
    }
    let result = render::check(name, src, declared);
    let cost = key.len()
        + result
            .as_ref()
            .err()
            .map_or(0, |ms| ms.iter().map(String::len).sum());
    let mut guard = lock();
    let (bytes, map) = &mut *guard;
    if *bytes + cost > TEMPLATE_CACHE_BYTES {
        map.clear();
        *bytes = 0;
    }
    *bytes += cost;
    map.insert(key, result.clone());
    result
}

pub(super) fn check_reserved_names(c: &mut Collector, pod: &PodView) {
    const RESERVED: &str = "secret-injector-";
    if let Some(v) = pod.volumes().iter().find(|v| v.name.starts_with(RESERVED)) {
        c.push(
            "*",
            format!(
                "the pod already has a volume named `{}`; the prefix {RESERVED} is reserved for this webhook's volumes, rename that volume",
                contract::text::Escaped(&v.name)
            ),
        );
    }
    let mounts = pod
        .containers()
        .iter()
        .chain(pod.init_containers())
        .flat_map(|ct| {
            ct.volume_mounts
                .iter()
                .flatten()
                .map(move |m| (ct.name.as_str(), m.name.as_str()))
        });
    for (container, volume) in mounts
        .filter(|(_, v)| v.starts_with(RESERVED))
        .take(MAX_SUGGESTIONS)
    {
        c.push(
            "*",
            format!(
                "container `{}` mounts volume `{}`; the prefix {RESERVED} is reserved for this webhook's volumes, which it mounts only into the containers it selects; remove that volumeMount or rename the volume",
                contract::text::Escaped(container),
                contract::text::Escaped(volume)
            ),
        );
    }
}

pub(super) fn unknown_key(c: &mut Collector, suffix: &str) {
    if suffix.len() > MAX_KEY_NAME {
        let shown: String = suffix.chars().take(MAX_KEY_NAME).collect();
        c.push(
            &format!("{}…", contract::text::Escaped(&shown)),
            format!(
                "unknown annotation, and its name is {} characters where Kubernetes allows {MAX_KEY_NAME} after the prefix; remove it",
                suffix.len()
            ),
        );
        return;
    }
    // Candidates: the exact keys, and each prefixed key with the user's own name kept.
    let hint = if c.may_suggest() {
        let mut candidates: Vec<String> = EXACT_KEYS.iter().map(|s| s.to_string()).collect();
        for (i, _) in suffix.match_indices('-') {
            let name = &suffix[i + 1..];
            if !name.is_empty() {
                candidates.extend(PREFIX_KEYS.iter().map(|p| format!("{p}{name}")));
            }
        }
        closest(suffix, candidates.iter().map(String::as_str))
            .map(|s| format!("did you mean `{}`? ", key(s)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    c.push(
        suffix,
        format!(
            "unknown annotation; {hint}known keys are {} and the prefixes {}",
            EXACT_KEYS.join(", "),
            PREFIX_KEYS
                .iter()
                .map(|p| format!("{p}<name>"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

pub(super) fn check_file_name(c: &mut Collector, suffix: &str, name: &str) -> bool {
    let valid_chars = name
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    let problem = if name.is_empty() {
        Some("the file name after the prefix is empty".to_string())
    } else if name.len() > 56 {
        Some(format!(
            "the file name is {} characters; at most 56",
            name.len()
        ))
    } else if !valid_chars {
        Some(format!(
            "the file name `{name}` may only use letters, digits, `.`, `_` and `-`"
        ))
    } else if name == "." || name == ".." || name.starts_with("..") {
        Some(format!(
            "the file name `{name}` is reserved (`.`, `..` and names starting with `..` are not allowed)"
        ))
    } else {
        None
    };
    match problem {
        Some(m) => {
            let prefix = suffix.strip_suffix(name).unwrap_or("secret-");
            c.push(
                suffix,
                format!("{m}; for example secret-injector.io/{prefix}db-password"),
            );
            false
        }
        None => true,
    }
}

pub(super) fn check_env_name(c: &mut Collector, suffix: &str, var: &str) -> bool {
    let valid = contract::envfile::valid_env_name(var);
    if !valid {
        c.push(
            suffix,
            format!(
                "`{var}` is not an environment variable name (letters, digits and `_`, not starting with a digit); for example secret-injector.io/env-POSTGRES_PASSWORD: aws:prod/db#password"
            ),
        );
    }
    valid
}

/// `env-from-allow`: comma-separated loader variables that `env-from` may load (see
/// `envfile::is_loader_variable`; init refuses the others).
pub(super) fn parse_env_from_allow(
    c: &mut Collector,
    warnings: &mut Vec<String>,
    list: &str,
    plan: &FetchPlan,
) -> BTreeSet<String> {
    let example = "for example secret-injector.io/env-from-allow: LD_LIBRARY_PATH,NODE_OPTIONS";
    let names = comma_list(list);
    if names.is_empty() {
        c.push(
            "env-from-allow",
            format!(
                "is empty; list the variable names env-from may set, separated by commas, {example}"
            ),
        );
    }
    let mut allowed = BTreeSet::new();
    for name in names {
        if contract::envfile::valid_env_name(name) {
            allowed.insert(name.to_string());
        } else {
            c.push(
                "env-from-allow",
                format!(
                    "`{name}` is not an environment variable name (letters, digits and `_`, not starting with a digit); {example}"
                ),
            );
        }
    }
    if plan.env_from.is_empty() {
        warnings.push(
            "secret-injector.io/env-from-allow only applies to variables loaded by secret-injector.io/env-from, which this pod does not use; it is ignored".to_string(),
        );
    } else {
        let plain: Vec<&str> = allowed
            .iter()
            .map(String::as_str)
            .filter(|n| !contract::envfile::is_loader_variable(n))
            .collect();
        if !plain.is_empty() {
            let shown: Vec<&str> = plain.iter().copied().take(5).collect();
            let more = if plain.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            warnings.push(format!(
                "secret-injector.io/env-from-allow lists {}{more}, which env-from loads without being allowed (only loader variables such as PATH, LD_* or NODE_OPTIONS need it); listing them changes nothing",
                shown.join(", ")
            ));
        }
    }
    allowed
}

pub(super) fn check_duplicates(c: &mut Collector, plan: &FetchPlan) {
    // File names that differ only in case collide on case-insensitive tooling and are
    // almost always a typo; the same goes for variables.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let names = plan.secrets.keys().chain(
        plan.templates
            .keys()
            .filter(|t| !plan.secrets.contains_key(*t)),
    );
    for name in names {
        if let Some(first) = seen.insert(name.to_lowercase(), name) {
            c.push(
                &format!("secret-{name}"),
                format!(
                    "the file name `{name}` duplicates `{first}` (they differ only in case); give each file one distinct name"
                ),
            );
        }
    }
}

pub(super) fn parse_mode(raw: &str) -> Result<u32, String> {
    let digits = raw.trim();
    let ok = (digits.len() == 3 || (digits.len() == 4 && digits.starts_with('0')))
        && digits.chars().all(|ch| ('0'..='7').contains(&ch));
    let example = "for example \"0440\" (owner and group read)";
    if !ok {
        return Err(format!(
            "`{raw}` is not an octal file mode of 3 or 4 digits; {example}"
        ));
    }
    let mode = u32::from_str_radix(digits, 8).expect("checked octal");
    if mode & 0o444 == 0 {
        return Err(format!("`{raw}` lets nobody read the file; {example}"));
    }
    if mode & 0o222 != 0 {
        return Err(format!(
            "`{raw}` makes the file writable, but secrets are mounted read-only; {example}"
        ));
    }
    Ok(mode)
}

/// The one uid (and gid) every target container runs as, when the pod spec says so:
/// the injected containers run as it, so the files belong to the app.
pub(super) fn parse_interval(c: &mut Collector, raw: &str) -> Option<Duration> {
    let example = "for example secret-injector.io/refresh-interval: 5m";
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if d < Duration::from_secs(10) => {
            c.push(
                "refresh-interval",
                format!("`{raw}` is shorter than the 10s minimum (it would hammer the secret store); {example}"),
            );
            None
        }
        Ok(d) if d > Duration::from_secs(24 * 3600) => {
            c.push(
                "refresh-interval",
                format!("`{raw}` is longer than the 24h maximum; {example}"),
            );
            None
        }
        Ok(d) => Some(d),
        Err(_) => {
            c.push(
                "refresh-interval",
                format!("`{raw}` is not a duration; use a number with s, m or h, {example}"),
            );
            None
        }
    }
}

/// `reload-url`: an `http://` URL on the pod's own loopback (the sidecar shares the
/// pod's network namespace), which the refresh sidecar POSTs to after the files changed.
pub(super) fn parse_reload_url(c: &mut Collector, raw: &str, refreshing: bool) -> Option<String> {
    let example = "for example secret-injector.io/reload-url: http://127.0.0.1:9090/-/reload";
    if !refreshing {
        c.push(
            "reload-url",
            "is only used by the refresh sidecar; add secret-injector.io/refresh-interval (for example 5m), or remove this annotation",
        );
        return None;
    }
    let problem = contract::reload::problem(raw);
    match problem {
        Some(m) => {
            c.push("reload-url", format!("{m}; {example}"));
            None
        }
        None => Some(raw.to_string()),
    }
}

pub(super) fn is_name(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || extra.contains(ch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache answers what the check answers, for each (name, declared, source):
    /// the same source with other declared secrets is checked again.
    #[test]
    fn template_cache_answers_what_the_check_answers() {
        let declared =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
        let src = "{{ secrets.db.password }}";
        for _ in 0..2 {
            assert_eq!(check_template("dsn", src, &declared(&["db"])), Ok(()));
            let e = check_template("dsn", src, &declared(&["api"])).unwrap_err();
            assert_eq!(Err(e), render::check("dsn", src, &declared(&["api"])));
            let bad = "{{ env('HOME') }}";
            assert_eq!(
                check_template("dsn", bad, &declared(&["db"])),
                render::check("dsn", bad, &declared(&["db"]))
            );
            assert!(check_template("dsn", bad, &declared(&["db"])).is_err());
            // Same text, another name: `username` is the own secret's field only for `db`.
            let own = "{{ username }}";
            assert_eq!(check_template("db", own, &declared(&["db"])), Ok(()));
            assert!(check_template("dsn", own, &declared(&["db"])).is_err());
        }
    }
}
