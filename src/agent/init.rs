//! `secret-injector init`: runs in the injected init container. Authenticate as the pod,
//! fetch every referenced secret (concurrently, bounded), render templates, and write
//! all files atomically, all or nothing. Transient failures retry with exponential
//! backoff and jitter until a deadline; permanent ones fail at once.
//!
//! Everything comes from args and env, so a person can run it by hand to debug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;

use crate::agent::providers::aws::{self, Aws};
use crate::agent::providers::vault::{self, Lease, Vault};
use crate::agent::providers::{FetchError, Fetched, Selected};
use crate::contract::plan::FetchPlan;
use crate::contract::reference::{Provider, SecretRef};
use crate::contract::render;

/// What `init` needs, resolved from its args and env.
#[derive(Clone, Debug)]
pub struct Options {
    pub plan: FetchPlan,
    /// Where the files go (needed when the plan has files).
    pub out_dir: Option<PathBuf>,
    pub env_dir: Option<PathBuf>,
    pub deadline: Duration,
    pub concurrency: usize,
    /// A refresh sidecar takes over the Vault token: do not revoke it.
    pub keep_token: bool,
    pub vault: Option<vault::Settings>,
    pub aws_region: Option<String>,
    /// Per-attempt timeout of one request.
    pub attempt_timeout: Duration,
}

/// The one-line failure of `init`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(pub String);

/// What `init` did, for its log line and for tests.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<String>,
    pub env_vars: usize,
    pub leases: Vec<Lease>,
    pub token_revoked: bool,
}

/// Retry `op` on transient errors with exponential backoff and jitter until `deadline`.
async fn retrying<T, F, Fut>(deadline: Instant, op: F) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FetchError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(move |e: &FetchError| e.is_transient() && Instant::now() < deadline)
        // never sleep past the deadline: the last attempt happens at it
        .adjust(move |_: &FetchError, d: Option<Duration>| {
            d.map(|d| d.min(deadline.saturating_duration_since(Instant::now())))
        })
        .notify(|e: &FetchError, after: Duration| {
            tracing::warn!(error = %e, retry_in_ms = after.as_millis() as u64, "transient failure; retrying");
        })
        .await
}

fn gave_up(e: FetchError, deadline: Duration) -> FetchError {
    if e.is_transient() {
        FetchError::transient(format!(
            "gave up after {}: {}",
            humantime::format_duration(deadline),
            e.message
        ))
    } else {
        e
    }
}

/// Fetch, render and write. The returned error is the one line to print.
pub async fn run(opts: Options) -> Result<Report, InitError> {
    let start = Instant::now();
    let deadline = start + opts.deadline;
    let plan = &opts.plan;

    // Distinct locations: each is read once however many references point into it.
    let mut locations: BTreeMap<String, SecretRef> = BTreeMap::new();
    for r in plan.refs() {
        let loc = r.location();
        locations.insert(loc.to_string(), loc);
    }

    let vault = if plan.uses(Provider::Vault) {
        let settings = opts.vault.clone().ok_or_else(|| {
            InitError("the plan reads from Vault but VAULT_ADDR is not set".to_string())
        })?;
        let login = retrying(deadline, || Vault::login(settings.clone()))
            .await
            .map_err(|e| InitError(gave_up(e, opts.deadline).message))?;
        Some(login)
    } else {
        None
    };
    // One AWS client per region: the configured one, and the region of each full ARN.
    let mut aws: BTreeMap<Option<String>, Aws> = BTreeMap::new();
    for r in locations.values().filter(|r| r.provider == Provider::Aws) {
        let region = arn_region(r);
        if let std::collections::btree_map::Entry::Vacant(slot) = aws.entry(region.clone()) {
            let configured = opts.aws_region.clone();
            slot.insert(Aws::new(region.or(configured), opts.attempt_timeout).await);
        }
    }

    let logged_in = start.elapsed();
    let mut leases: Vec<Lease> = Vec::new();
    let result: Result<Report, InitError> = async {
    let mut fetched: BTreeMap<String, Fetched> = BTreeMap::new();
    let mut errors: Vec<FetchError> = Vec::new();

    // AWS current versions of several secrets: batches of 20 per region.
    for (region, client) in &aws {
        let batchable: Vec<&SecretRef> = locations
            .values()
            .filter(|r| r.provider == Provider::Aws && r.version.is_none() && &arn_region(r) == region)
            .collect();
        if batchable.len() < 2 {
            continue;
        }
        let aws = client;
        for chunk in batchable.chunks(aws::BATCH_LIMIT) {
            let ids: Vec<String> = chunk.iter().map(|r| r.path.clone()).collect();
            match retrying(deadline, || aws.batch(&ids)).await {
                Ok(results) => {
                    for (id, result) in results {
                        let key = format!("aws:{id}");
                        match result {
                            Some(Ok(v)) => {
                                fetched.insert(key, v);
                            }
                            Some(Err(e)) if !e.is_transient() => errors.push(e),
                            // not answered, or transient: fetched singly below
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "BatchGetSecretValue failed; fetching one by one");
                }
            }
        }
    }

    // Everything else, concurrently with a bound.
    let pending: Vec<SecretRef> = locations
        .iter()
        .filter(|(k, _)| !fetched.contains_key(*k))
        .filter(|(_, r)| {
            !errors
                .iter()
                .any(|e| e.message.starts_with(&format!("{r}:")))
        })
        .map(|(_, r)| r.clone())
        .collect();
    type Outcome = (SecretRef, Result<(Fetched, Option<Lease>), FetchError>);
    let results: Vec<Outcome> = futures::stream::iter(pending)
        .map(|r| {
            let vault = vault.as_ref();
            let aws = aws.get(&arn_region(&r));
            async move {
                let result = retrying(deadline, || async {
                    match r.provider {
                        Provider::Vault => vault.expect("logged in").read(&r).await,
                        Provider::Aws => aws
                            .expect("a client per region")
                            .get(&r)
                            .await
                            .map(|v| (v, None)),
                    }
                })
                .await;
                (r, result)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (r, result) in results {
        match result {
            Ok((v, lease)) => {
                fetched.insert(r.to_string(), v);
                leases.extend(lease);
            }
            Err(e) => errors.push(gave_up(e, opts.deadline)),
        }
    }
    let fetch_done = start.elapsed();
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.message.cmp(&b.message));
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more failures)", n - 1),
        };
        return Err(InitError(format!("{}{more}", errors[0].message)));
    }

    // Values of the declared secrets, then file contents; nothing is written yet.
    let select = |r: &SecretRef| -> Result<Selected, InitError> {
        fetched
            .get(&r.location().to_string())
            .ok_or_else(|| InitError(format!("{r}: not fetched")))?
            .select(r)
            .map_err(|e| InitError(e.message))
    };
    let mut values: BTreeMap<String, Selected> = BTreeMap::new();
    for (name, r) in &plan.secrets {
        values.insert(name.clone(), select(r)?);
    }
    let template_ctx: BTreeMap<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), v.template_value()))
        .collect();
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for (name, mode) in &plan.files {
        let bytes = match plan.templates.get(name) {
            Some(src) => render::render(name, src, &template_ctx)
                .map_err(|e| InitError(e.to_string()))?
                .into_bytes(),
            None => values
                .get(name)
                .ok_or_else(|| InitError(format!("file `{name}` has no secret or template")))?
                .file_bytes(),
        };
        files.push((name.clone(), bytes, *mode));
    }

    // Env mode: one JSON object of variables.
    let mut env_vars: BTreeMap<String, String> = BTreeMap::new();
    for r in &plan.env_from {
        match select(r)? {
            Fetched::Map(map) => {
                check_loader_keys(r, map.keys(), plan)?;
                for (k, v) in map {
                    if !crate::contract::envfile::valid_env_name(&k) {
                        return Err(InitError(format!(
                            "{r}: key `{k}` is not a valid environment variable name, so env-from cannot load it"
                        )));
                    }
                    env_vars.insert(k, json_to_env(v));
                }
            }
            _ => {
                return Err(InitError(format!(
                    "{r}: env-from needs a JSON object or key/value secret, and this one is a plain value"
                )));
            }
        }
    }
    for (var, r) in &plan.env {
        let value = match select(r)? {
            Fetched::Text(s) => s,
            Fetched::Map(m) => serde_json::to_string(&m).expect("a map serializes"),
            Fetched::Binary(b) => String::from_utf8(b).map_err(|_| {
                InitError(format!(
                    "{r}: binary secret is not UTF-8 text, so it cannot be {var}"
                ))
            })?,
        };
        env_vars.insert(var.clone(), value);
    }

    if !files.is_empty() {
        let dir = opts
            .out_dir
            .as_ref()
            .ok_or_else(|| InitError("the plan has files but no --out-dir".to_string()))?;
        write_all_or_nothing(dir, &files).map_err(|e| {
            InitError(format!(
                "cannot write the secret files in {}: {e}",
                dir.display()
            ))
        })?;
    }
    if plan.env_mode() {
        let dir = opts
            .env_dir
            .as_ref()
            .ok_or_else(|| InitError("env-mode references need --env-dir".to_string()))?;
        // What init let through: exec refuses any other loader variable.
        let env_file = crate::contract::envfile::EnvFile {
            loader_allowed: env_vars
                .keys()
                .filter(|k| crate::contract::envfile::is_loader_variable(k))
                .cloned()
                .collect(),
            vars: env_vars.clone(),
        };
        let json = serde_json::to_vec(&env_file).expect("env serializes");
        write_all_or_nothing(
            dir,
            &[(
                crate::contract::names::ENV_FILE_NAME.to_string(),
                json,
                plan.env_mode_bits(),
            )],
        )
        .map_err(|e| {
            InitError(format!(
                "cannot write the env file in {}: {e}",
                dir.display()
            ))
        })?;
        install_self(dir).map_err(|e| {
            InitError(format!(
                "cannot copy the secret-injector binary into {}: {e}",
                dir.display()
            ))
        })?;
    }

    let written = start.elapsed();
    let report = Report {
        files: files.iter().map(|(n, _, _)| n.clone()).collect(),
        env_vars: env_vars.len(),
        leases: leases.clone(),
        token_revoked: false,
    };
    for (name, bytes, mode) in &files {
        // no hash of the content: for short values a hash is as good as the value
        tracing::info!(file = %name, mode = %format!("{mode:04o}"), bytes = bytes.len(), "wrote");
    }
    tracing::info!(
        files = report.files.len(),
        env_vars = report.env_vars,
        login_ms = logged_in.as_millis() as u64,
        fetch_ms = (fetch_done - logged_in).as_millis() as u64,
        written_ms = written.as_millis() as u64,
        "secrets ready"
    );
    Ok(report)
    }
    .await;

    // The token: kept for leases or a sidecar after success; after a failure revoked,
    // with any leases it made, so a crash-looping pod leaves nothing behind.
    match (&vault, result) {
        (Some(v), Ok(mut report)) => {
            report.token_revoked = finish_vault(v, &leases, opts.keep_token).await;
            Ok(report)
        }
        (Some(v), Err(e)) => {
            if let Err(re) = v.revoke_self().await {
                tracing::warn!(error = %re, "could not revoke the Vault token after the failure");
            }
            Err(e)
        }
        (None, result) => result,
    }
}

/// The region of a full Secrets Manager ARN reference (`None`: the configured region).
fn arn_region(r: &SecretRef) -> Option<String> {
    r.path
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|region| !region.is_empty())
        .map(str::to_string)
}

/// Revoke the token unless a sidecar takes it over or leases depend on it.
async fn finish_vault(v: &Vault, leases: &[Lease], keep: bool) -> bool {
    if keep {
        tracing::info!("keeping the Vault token for the refresh sidecar");
        return false;
    }
    if !leases.is_empty() {
        tracing::info!(
            leases = leases.len(),
            "keeping the Vault token: revoking it would revoke the dynamic credentials; they end when the token or the lease expires, whichever is first"
        );
        return false;
    }
    match v.revoke_self().await {
        Ok(()) => {
            tracing::debug!("revoked the Vault token");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not revoke the Vault token; it expires with its TTL");
            false
        }
    }
}

/// Keys of an `env-from` secret that are loader variables ([`crate::contract::envfile::is_loader_variable`])
/// are refused unless the pod allows them with `env-from-allow`, or names the variable
/// itself with `env-<VAR>` (whose value then wins). The secret's writer chooses the keys;
/// only the pod's author may choose what code the app loads.
fn check_loader_keys<'a>(
    r: &SecretRef,
    keys: impl Iterator<Item = &'a String>,
    plan: &FetchPlan,
) -> Result<(), InitError> {
    let mut refused: Vec<&str> = keys
        .filter(|k| crate::contract::envfile::is_loader_variable(k))
        .filter(|k| !plan.env_from_allow.contains(*k) && !plan.env.contains_key(*k))
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort_unstable();
    let names = refused
        .iter()
        .map(|k| format!("`{}`", crate::logging::Escaped(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let (what, they, them) = if refused.len() == 1 {
        (
            format!("key {names} is a loader variable"),
            "it changes",
            "it",
        )
    } else {
        (
            format!("keys {names} are loader variables"),
            "they change",
            "them",
        )
    };
    let example: Vec<&str> = plan
        .env_from_allow
        .iter()
        .map(String::as_str)
        .chain(refused.iter().copied())
        .collect();
    Err(InitError(format!(
        "{r}: {what} ({they} which code the app runs), so env-from refuses {them}; if the app needs {them} from this secret, add {them} to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: {})",
        example.join(",")
    )))
}

fn json_to_env(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The temp file of `name` in `dir`: `..tmp.<name>`. File names may not start with `..`
/// (`spec::check_file_name`), so no file, and no other file's temp file, can have it;
/// Kubernetes' atomic volume writer reserves `..`-names (`..data`) the same way.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("..tmp.{name}"))
}

/// Write every file through a temp file in the same directory ([`temp_path`], fsync'd,
/// with its mode), then rename them all. If any write fails, the temp files are removed
/// and no file is replaced.
pub fn write_all_or_nothing(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
        for (name, bytes, mode) in files {
            let tmp = temp_path(dir, name);
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            temps.push((tmp.clone(), dir.join(name)));
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, target) in &temps {
        std::fs::rename(tmp, target)?;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Copy this binary to `<dir>/bin/secret-injector` for env-mode containers (the app's
/// image has neither it nor a shell to copy it with).
fn install_self(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let tmp = temp_path(&bin, "secret-injector");
    // a streaming copy: the binary never sits in this process's memory
    std::fs::copy(std::env::current_exe()?, &tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, bin.join("secret-injector"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_all_files_with_modes_or_none() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            ("a".to_string(), b"one".to_vec(), 0o400),
            ("b.yaml".to_string(), b"two".to_vec(), 0o444),
        ];
        write_all_or_nothing(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        let mode = std::fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        // A name that cannot be created (a directory is in the way) leaves nothing new.
        std::fs::create_dir(temp_path(dir.path(), "c")).unwrap();
        let bad = vec![
            ("a".to_string(), b"changed".to_vec(), 0o400),
            ("c".to_string(), b"x".to_vec(), 0o400),
        ];
        assert!(write_all_or_nothing(dir.path(), &bad).is_err());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert!(!dir.path().join("c").exists());
        assert!(!temp_path(dir.path(), "a").exists());
    }

    /// The review's reproduction: a file named like the old temp name of another
    /// (`.a.secret-injector-tmp` beside `a`) took over `a`, with its own mode. In the
    /// plan's order (a BTreeMap: `.` sorts before `a`).
    #[test]
    fn no_file_name_reaches_another_files_temp_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            (
                ".a.secret-injector-tmp".to_string(),
                b"other secret".to_vec(),
                0o444,
            ),
            ("a".to_string(), b"a's secret".to_vec(), 0o400),
        ];
        write_all_or_nothing(dir.path(), &files).unwrap();
        for (name, bytes, mode) in &files {
            let path = dir.path().join(name);
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name}");
            let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, *mode, "{name}: mode {got:o}");
        }
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, [".a.secret-injector-tmp", "a"], "no temp file left");
        // every temp name starts with `..`, which no valid file name does
        assert!(
            temp_path(dir.path(), "x")
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("..")
        );
    }

    fn plan(env_from_allow: &[&str], env: &[&str]) -> FetchPlan {
        let r = crate::contract::reference::parse("vault:kv/x").unwrap();
        FetchPlan {
            env_from: vec![r.clone()],
            env_from_allow: env_from_allow.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|v| (v.to_string(), r.clone())).collect(),
            ..FetchPlan::default()
        }
    }

    #[test]
    fn env_from_refuses_loader_variables_unless_allowed() {
        let r = crate::contract::reference::parse("aws:team/app").unwrap();
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let ok = keys(&["DB_PASSWORD", "API_KEY"]);
        assert!(check_loader_keys(&r, ok.iter(), &plan(&[], &[])).is_ok());

        let bad = keys(&["DB_PASSWORD", "LD_PRELOAD"]);
        let e = check_loader_keys(&r, bad.iter(), &plan(&[], &[]))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("aws:team/app: key `LD_PRELOAD` is a loader variable")
                && e.contains(
                    "add it to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: LD_PRELOAD)"
                )
                && !e.contains('\n'),
            "{e}"
        );
        // allowed by the pod, or named by the pod itself: loaded
        assert!(check_loader_keys(&r, bad.iter(), &plan(&["LD_PRELOAD"], &[])).is_ok());
        assert!(check_loader_keys(&r, bad.iter(), &plan(&[], &["LD_PRELOAD"])).is_ok());

        // several: all named, and the example keeps what is already allowed
        let bad = keys(&["PATH", "NODE_OPTIONS", "LD_AUDIT"]);
        let e = check_loader_keys(&r, bad.iter(), &plan(&["NODE_OPTIONS"], &[]))
            .unwrap_err()
            .0;
        assert!(
            e.contains("keys `LD_AUDIT`, `PATH` are loader variables")
                && e.contains("env-from-allow: NODE_OPTIONS,LD_AUDIT,PATH"),
            "{e}"
        );
    }
}
