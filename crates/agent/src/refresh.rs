//! `secret-injector refresh`: the native sidecar of pods with
//! `secret-injector.io/refresh-interval`. It does the pod's first fetch itself (so there
//! is one login and one set of leases per pod), reports ready on its probe port once the
//! files exist (the startup probe holds the app until then), and then, until SIGTERM:
//!
//! - re-reads every secret without a lease each interval (with jitter) and publishes a
//!   new generation of all files when any changed (`files::publish`: they switch
//!   together through `..data`);
//! - renews the Vault token and each lease at 2/3 of its TTL; a lease that cannot be
//!   renewed, or nears its max TTL, is replaced by new credentials and revoked after a
//!   grace period; a token that cannot be renewed is replaced by a new login with the
//!   current projected token (and its leases with it);
//! - keeps the last good files when a store fails, backs off, and says so in its log and
//!   metrics;
//! - on SIGTERM revokes the token (and with it every lease) and exits 0.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::assemble::{Assembled, assemble};
use crate::fetch::{Budget, Stores, locations};
use crate::init::{self, Options};
use crate::leases::{Held, LeaseState, backoff};
use crate::probes::unix_now;
pub use crate::probes::{Status, serve_probes};
use crate::providers::AgentError;
use crate::providers::vault::{Lease, Vault};
use crate::stop;
use contract::reference::SecretRef;
use runtime::files::{FileOut, stage_generation};

mod reload;
mod session;

/// What the sidecar needs besides init's options.
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    pub init: Options,
    pub interval: Duration,
    /// POSTed after each change of the files (not after the first generation).
    pub reload_url: Option<String>,
    /// Where the probes and metrics are served (the pod's IP: the kubelet probes it).
    pub probe_listen: SocketAddr,
    /// How long replaced credentials stay valid after their replacements are written,
    /// before they are revoked: apps hold open connections with the old credentials,
    /// and need a moment to reconnect (`--lease-grace`, 30 s).
    pub lease_grace: Duration,
}

/// `d` ± 10 %, so the pods of a Deployment do not refresh in step.
fn jittered(d: Duration, keys: &std::collections::hash_map::RandomState) -> Duration {
    let r = keys.hash_one(Instant::now()) % 2001; // 0..=2000
    d.mul_f64(0.9 + r as f64 / 10_000.0)
}

/// A short keyed hash of a file's content for the log: it shows which files changed and
/// whether two lines saw the same content, and cannot be brute-forced offline because
/// the key is random per process and never leaves it.
fn short_hash(bytes: &[u8], keys: &std::collections::hash_map::RandomState) -> String {
    format!("{:08x}", keys.hash_one(bytes) as u32)
}

/// The names of the files whose content differs between two assemblies.
fn changed<'a>(old: Option<&Assembled>, new: &'a Assembled) -> Vec<&'a FileOut> {
    new.files
        .iter()
        .filter(|f| old.is_none_or(|o| !o.files.contains(f)))
        .collect()
}

struct Sidecar {
    opts: RefreshOptions,
    stores: Stores,
    values: crate::providers::Values,
    leases: HashMap<SecretRef, Held>,
    token_renew_at: Option<Instant>,
    /// The token's TTL at login.
    token_issued_ttl: u64,
    /// When the current token ends unless renewed (`None`: never, or no Vault).
    token_expires_at: Option<Instant>,
    /// Vault sessions replaced by a new login whose leases the files still hold, with
    /// when each token ends. Each is revoked only once the files hold none of its
    /// leases (after the grace period), or dropped when it has expired anyway.
    superseded: Vec<(Option<Instant>, Vault)>,
    /// Leases replaced by new ones that are not in the files yet.
    replaced: Vec<Lease>,
    /// Replaced leases and sessions whose replacements are written, revoked after the
    /// grace period (a session's token revoked, which revokes its leases).
    retiring: Vec<(Instant, Lease)>,
    retiring_sessions: Vec<(Instant, Vault)>,
    published: Option<Assembled>,
    /// Values were taken that are not in the files yet (a publish failed).
    unpublished: bool,
    generation: u64,
    status: Arc<Status>,
    keys: std::collections::hash_map::RandomState,
    failures_in_a_row: u32,
    /// The files changed since the app was last told.
    reload_pending: bool,
    /// The "credentials are going" line was logged, and not yet its all-clear.
    warned_doomed: bool,
    /// The token could not be renewed (or nears its max TTL) and no new login has
    /// replaced it yet: it takes its leases with it when it ends.
    token_failing: bool,
}

impl Sidecar {
    fn budget(&self, deadline: Duration) -> Budget {
        Budget::starting_now(
            deadline,
            self.opts.init.concurrency,
            self.opts.init.attempt_timeout,
        )
    }

    /// One attempt of a refresh cycle may retry a transient failure for at most this long.
    fn cycle_deadline(&self) -> Duration {
        (self.opts.interval / 2).min(self.opts.init.attempt_timeout * 2)
    }

    /// Take what a fetch returned: values, and leases to renew from now on. A lease it
    /// replaces is revoked after its replacement is written and the grace period has
    /// passed; an orphan ends with its own session instead.
    fn take(&mut self, fetched: crate::fetch::Fetch) {
        self.values.extend(fetched.values);
        for (location, lease) in fetched.leases {
            if let Some(old) = self.leases.insert(location, Held::issued(lease))
                && old.state != LeaseState::Orphaned
            {
                self.replaced.push(old.lease);
            }
        }
        self.unpublished = true;
    }

    /// The files hold what was taken: what it replaced may now be revoked, after the
    /// grace period.
    fn written(&mut self) {
        self.unpublished = false;
        let at = Instant::now() + self.opts.lease_grace;
        self.retiring
            .extend(self.replaced.drain(..).map(|lease| (at, lease)));
        if !self
            .leases
            .values()
            .any(|h| h.state == LeaseState::Orphaned)
        {
            self.retiring_sessions
                .extend(self.superseded.drain(..).map(|(_, v)| (at, v)));
        }
    }

    /// Assemble, and publish a new generation when any file changed.
    fn publish_if_changed(&mut self) -> Result<(), AgentError> {
        let assembled = assemble(&self.opts.init.plan, &self.values)?;
        let changes = changed(self.published.as_ref(), &assembled);
        let env_changed = self.published.as_ref().map(|p| &p.env_file) != Some(&assembled.env_file);
        if changes.is_empty() && !env_changed {
            self.written();
            return Ok(());
        }
        // Everything that can fail comes before anything is in place, and a failure
        // removes what this publication wrote, never the last good generation: the
        // env file (first generation only) and the new generation are staged, then the
        // env file is put in place and `..data` switched.
        let env = match self.published {
            // The env file is read once, when the app starts: written for the first
            // generation only (see docs/design.md, refresh in env mode).
            None => Some(init::stage_env(
                &assembled,
                self.opts.init.env_dir.as_deref(),
            )?),
            Some(_) => None,
        };
        let mut generation = None;
        if !assembled.files.is_empty() {
            let dir = self
                .opts
                .init
                .out_dir
                .as_ref()
                .ok_or_else(|| AgentError::permanent("the plan has files but no --out-dir"))?;
            let cannot = |e: runtime::Error| {
                AgentError::permanent(format!(
                    "cannot publish the secret files in {}: {e}",
                    dir.display()
                ))
            };
            self.generation += 1;
            let staged =
                stage_generation(dir, self.generation, &assembled.files).map_err(cannot)?;
            generation = Some((staged, cannot));
        }
        let env = env.map(init::commit).transpose()?;
        if let Some((staged, cannot)) = generation
            && let Err(e) = staged.switch()
        {
            if let Some(env) = env {
                env.undo();
            }
            return Err(cannot(e));
        }
        if self.published.is_some() && env_changed {
            tracing::warn!(
                "env-mode values changed; the app keeps the values it started with until it restarts"
            );
        }
        for f in &changes {
            tracing::info!(file = %f.name, hash = %short_hash(&f.bytes, &self.keys), generation = self.generation, "file changed");
        }
        if self.published.is_some() && !changes.is_empty() {
            self.reload_pending = true;
        }
        self.published = Some(assembled);
        self.status.publications.fetch_add(1, Ordering::Relaxed);
        self.written();
        Ok(())
    }

    /// Re-read every secret without a lease.
    async fn refresh(&mut self) -> Result<(), AgentError> {
        let plain: Vec<SecretRef> = locations(&self.opts.init.plan)
            .into_iter()
            .filter(|l| !self.leases.contains_key(l))
            .collect();
        if plain.is_empty() {
            return Ok(());
        }
        let fetched = self
            .stores
            .fetch_locations(&plain, self.budget(self.cycle_deadline()))
            .await?;
        self.take(fetched);
        self.publish_if_changed()
    }

    /// POST the reload URL once after the files changed. A failure is logged and not
    /// retried: the files are already in place, and the next change asks again.
    async fn tell_the_app(&mut self) {
        if !std::mem::take(&mut self.reload_pending) {
            return;
        }
        if let Some(url) = &self.opts.reload_url {
            reload::tell(url).await;
        }
    }

    /// Leases whose credentials, still in the files, are going: their token was
    /// replaced, or could not be renewed (all its leases end with it), or they could not
    /// be renewed themselves, and no replacement is written yet.
    fn doomed(&self) -> usize {
        if self.token_failing {
            return self.leases.len();
        }
        self.leases.values().filter(|h| h.doomed()).count()
    }

    /// One line when the files start holding credentials that are going, one when they
    /// no longer do.
    fn report_doomed(&mut self, doomed: usize) {
        match (doomed > 0, self.warned_doomed) {
            (true, false) => tracing::warn!(
                leases = doomed,
                "the files hold credentials whose Vault lease or token is ending; replacing them as soon as the store answers (secret_injector_refresh_stale is 1 until then)"
            ),
            (false, true) => {
                tracing::info!("the credentials in the files are current again")
            }
            _ => {}
        }
        self.warned_doomed = doomed > 0;
    }
}

impl Sidecar {
    fn new(opts: RefreshOptions, stores: Stores, status: Arc<Status>) -> Sidecar {
        let mut sidecar = Sidecar {
            stores,
            values: Default::default(),
            leases: HashMap::new(),
            token_renew_at: None,
            token_issued_ttl: 0,
            token_expires_at: None,
            superseded: Vec::new(),
            replaced: Vec::new(),
            retiring: Vec::new(),
            retiring_sessions: Vec::new(),
            published: None,
            unpublished: false,
            // A restarted sidecar continues the numbering: never rewrite the live one.
            generation: opts
                .init
                .out_dir
                .as_deref()
                .and_then(runtime::files::current_generation)
                .unwrap_or(0),
            status,
            keys: Default::default(),
            failures_in_a_row: 0,
            reload_pending: false,
            warned_doomed: false,
            token_failing: false,
            opts,
        };
        sidecar.logged_in();
        sidecar
    }

    /// Log in and do the first fetch; on failure the token is revoked. `Ok(None)`:
    /// `stop` (SIGTERM) came first, and whatever was issued is revoked.
    async fn start<S: Future<Output = ()>>(
        opts: RefreshOptions,
        status: Arc<Status>,
        mut stop: Pin<&mut S>,
    ) -> Result<Option<Sidecar>, AgentError> {
        // What a killed run left (temp files, a generation never switched to) goes
        // first; the last good generation stays.
        init::remove_leftovers(&opts.init);
        let init = &opts.init;
        let budget = Budget::starting_now(init.deadline, init.concurrency, init.attempt_timeout);
        let Some(stores) = stop::login(&init.plan, &init.stores, budget, stop.as_mut()).await?
        else {
            tracing::info!("SIGTERM before the first files were written: stopping");
            return Ok(None);
        };
        let mut sidecar = Sidecar::new(opts, stores, status);
        let first = async {
            let fetched = sidecar
                .stores
                .fetch(&sidecar.opts.init.plan, budget)
                .await?;
            sidecar.take(fetched);
            sidecar.publish_if_changed()
        };
        // The files are published in one synchronous step: SIGTERM comes before it or
        // after it, never half way.
        let first = tokio::select! {
            result = first => Some(result),
            _ = stop.as_mut() => None,
        };
        match first {
            None => {
                tracing::info!("SIGTERM before the first files were written: stopping");
                sidecar.shut_down().await;
                return Ok(None);
            }
            Some(Err(e)) => {
                sidecar.shut_down().await;
                return Err(e);
            }
            Some(Ok(())) => {}
        }
        sidecar.status.ready.store(true, Ordering::Relaxed);
        sidecar
            .status
            .last_success_unix
            .store(unix_now(), Ordering::Relaxed);
        tracing::info!(
            files = sidecar.published.as_ref().map_or(0, |p| p.files.len()),
            leases = sidecar.leases.len(),
            interval = %humantime::format_duration(sidecar.opts.interval),
            "secrets ready; refreshing"
        );
        Ok(Some(sidecar))
    }

    /// When something is next due: the refresh, the token, a lease, a revocation; at
    /// most 10 s away, so the heartbeat goes on.
    fn next_wake(&self, next_refresh: Instant) -> Instant {
        let next_lease = self.leases.values().map(|h| h.renew_at).min();
        let next_retire = self
            .retiring
            .iter()
            .map(|(at, _)| *at)
            .chain(self.retiring_sessions.iter().map(|(at, _)| *at))
            .min();
        [
            Some(next_refresh),
            self.token_renew_at,
            next_lease,
            next_retire,
        ]
        .into_iter()
        .flatten()
        .fold(Instant::now() + Duration::from_secs(10), Instant::min)
    }

    /// One turn of the loop: what is due, then the bookkeeping of success or failure.
    /// Returns when the next refresh is due.
    async fn turn(&mut self, next_refresh: Instant) -> Instant {
        let now = Instant::now();
        let refresh_due = now >= next_refresh;
        let due = refresh_due
            || self.unpublished
            || self.token_renew_at.is_some_and(|t| t <= now)
            || self.leases.values().any(|h| h.renew_at <= now);
        let result = async {
            if self.unpublished {
                self.publish_if_changed()?;
            }
            self.keep_token().await?;
            self.keep_leases().await?;
            if refresh_due {
                self.refresh().await?;
            }
            Ok::<_, AgentError>(())
        }
        .await;
        self.retire().await;
        self.tell_the_app().await;
        let doomed = self.doomed();
        self.report_doomed(doomed);
        let status = &self.status;
        match result {
            // A turn that only kept the heartbeat going says nothing about the files.
            Ok(()) if !due => next_refresh,
            Ok(()) => {
                // Files holding credentials that are going are stale, whatever else
                // succeeded.
                status.stale.store(doomed > 0, Ordering::Relaxed);
                if doomed == 0 {
                    self.failures_in_a_row = 0;
                    status
                        .last_success_unix
                        .store(unix_now(), Ordering::Relaxed);
                }
                if refresh_due {
                    status.refreshes.fetch_add(1, Ordering::Relaxed);
                    Instant::now() + jittered(self.opts.interval, &self.keys)
                } else {
                    next_refresh
                }
            }
            Err(e) => {
                // Keep the last good files; try again later, backing off to the interval,
                // whatever failed: the refresh, the token or a lease; sooner while the
                // files hold credentials that are going.
                self.failures_in_a_row += 1;
                status.failures.fetch_add(1, Ordering::Relaxed);
                status.stale.store(true, Ordering::Relaxed);
                let backoff = backoff(
                    self.failures_in_a_row,
                    self.opts.interval,
                    doomed > 0 || self.token_failing,
                );
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "refresh failed; keeping the last good files");
                let retry = Instant::now() + jittered(backoff, &self.keys);
                self.defer_due(retry);
                retry
            }
        }
    }

    /// Move whatever is overdue (the token, leases) to `at`, so a failure that persists
    /// is retried on the backoff schedule, not in a tight loop.
    fn defer_due(&mut self, at: Instant) {
        let now = Instant::now();
        if let Some(t) = self.token_renew_at.as_mut()
            && *t <= now
        {
            *t = at;
        }
        for held in self.leases.values_mut().filter(|h| h.renew_at <= now) {
            held.renew_at = at;
        }
    }
}

/// Run the sidecar until `shutdown` completes; `shutdown` is watched from the start,
/// also during the login and the first fetch.
pub async fn run(
    opts: RefreshOptions,
    status: Arc<Status>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    let Some(mut sidecar) = Sidecar::start(opts, status.clone(), shutdown.as_mut()).await? else {
        return Ok(());
    };
    let mut next_refresh = Instant::now() + jittered(sidecar.opts.interval, &sidecar.keys);
    loop {
        status.heartbeat_unix.store(unix_now(), Ordering::Relaxed);
        let wake = sidecar.next_wake(next_refresh);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        // SIGTERM also ends a slow turn (a store that does not answer), after at most
        // LOGIN_GRACE: a new login in flight then finishes, so its token is revoked
        // below rather than left to its TTL. The files are published in one step
        // without awaiting, so nothing is left half done.
        let next = {
            let turn = sidecar.turn(next_refresh);
            tokio::pin!(turn);
            tokio::select! {
                _ = &mut shutdown => {
                    let _ = tokio::time::timeout(stop::LOGIN_GRACE, turn).await;
                    None
                }
                next = &mut turn => Some(next),
            }
        };
        match next {
            Some(next) => next_refresh = next,
            None => break,
        }
    }
    if sidecar.stores.vault.is_some() {
        tracing::info!("SIGTERM: revoking the Vault token and its leases");
    } else {
        tracing::info!("SIGTERM: stopping");
    }
    sidecar.shut_down().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let keys = Default::default();
        for _ in 0..200 {
            let d = jittered(Duration::from_secs(100), &keys);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }

    /// Only files whose bytes differ are reported; the keyed hash says "same content"
    /// without being a plain hash of the value.
    #[test]
    fn changes_and_hashes() {
        let old = Assembled {
            files: vec![FileOut::new("a", "1", 0o400), FileOut::new("b", "2", 0o400)],
            ..Assembled::default()
        };
        let new = Assembled {
            files: vec![FileOut::new("a", "1", 0o400), FileOut::new("b", "3", 0o400)],
            ..Assembled::default()
        };
        let names: Vec<&str> = changed(Some(&old), &new)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(changed(None, &new).len(), 2);
        let keys = Default::default();
        assert_eq!(short_hash(b"x", &keys), short_hash(b"x", &keys));
        assert_ne!(short_hash(b"x", &keys), short_hash(b"y", &keys));
        assert_ne!(
            short_hash(b"x", &keys),
            short_hash(b"x", &Default::default()),
            "keyed per process"
        );
        assert_eq!(short_hash(b"x", &keys).len(), 8);
    }
}
