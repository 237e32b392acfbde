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
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::agent::assemble::{Assembled, assemble};
use crate::agent::fetch::{Budget, Stores, locations};
use crate::agent::init::{self, Options};
use crate::agent::probes::unix_now;
pub use crate::agent::probes::{Status, serve_probes};
use crate::agent::providers::AgentError;
use crate::agent::providers::vault::{Lease, Vault};
use crate::contract::reference::SecretRef;
use crate::files::{FileOut, publish};

/// How long a replaced lease stays valid before it is revoked: apps hold open
/// connections with the old credentials, and need a moment to reconnect.
pub const LEASE_GRACE: Duration = Duration::from_secs(30);

/// What the sidecar needs besides init's options.
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    pub init: Options,
    pub interval: Duration,
    /// POSTed after each change of the files (not after the first generation).
    pub reload_url: Option<String>,
    /// Where the probes and metrics are served (the pod's IP: the kubelet probes it).
    pub probe_listen: SocketAddr,
}

/// A lease held for the app, and when to renew it.
struct Held {
    lease: Lease,
    /// Its TTL when it was issued: a renewal that gives less means the lease nears its
    /// max TTL.
    issued_ttl: u64,
    renew_at: Instant,
    /// Held by a replaced token, so it ends with that token: replace it, do not renew.
    orphaned: bool,
}

/// 2/3 of a TTL from now: when a token or a lease is renewed. A TTL of 0 never expires.
fn two_thirds(ttl_seconds: u64) -> Instant {
    let ttl = if ttl_seconds == 0 {
        // 100 years: never, as far as this pod is concerned
        100 * 365 * 24 * 3600
    } else {
        ttl_seconds.max(3)
    };
    Instant::now() + Duration::from_secs(ttl * 2 / 3)
}

/// Whether a renewal gave the whole TTL at issue. Less means Vault capped it at the max
/// TTL, which is then less than one TTL away: time to replace, not to renew again.
fn renewed_in_full(ttl: u64, issued_ttl: u64) -> bool {
    ttl >= issued_ttl
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
    values: crate::agent::providers::Values,
    leases: HashMap<SecretRef, Held>,
    token_renew_at: Option<Instant>,
    /// The token's TTL at login.
    token_issued_ttl: u64,
    /// Replaced leases, revoked after [`LEASE_GRACE`]; replaced Vault sessions (their
    /// token revoked, which revokes their leases), likewise.
    retiring: Vec<(Instant, Lease)>,
    retiring_sessions: Vec<(Instant, Vault)>,
    published: Option<Assembled>,
    generation: u64,
    status: Arc<Status>,
    keys: std::collections::hash_map::RandomState,
    failures_in_a_row: u32,
    /// The files changed since the app was last told.
    reload_pending: bool,
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

    /// Take what a fetch returned: values, and leases to renew from now on.
    fn take(&mut self, fetched: crate::agent::fetch::Fetch) {
        self.values.extend(fetched.values);
        for (location, lease) in fetched.leases {
            let held = Held {
                renew_at: two_thirds(lease.duration),
                issued_ttl: lease.duration,
                orphaned: false,
                lease,
            };
            if let Some(old) = self.leases.insert(location, held) {
                self.retiring
                    .push((Instant::now() + LEASE_GRACE, old.lease));
            }
        }
    }

    /// Assemble, and publish a new generation when any file changed.
    fn publish_if_changed(&mut self) -> Result<(), AgentError> {
        let assembled = assemble(&self.opts.init.plan, &self.values)?;
        let changes = changed(self.published.as_ref(), &assembled);
        let env_changed = self.published.as_ref().map(|p| &p.env_file) != Some(&assembled.env_file);
        if changes.is_empty() && !env_changed {
            return Ok(());
        }
        if !assembled.files.is_empty() {
            let dir = self
                .opts
                .init
                .out_dir
                .as_ref()
                .ok_or_else(|| AgentError::permanent("the plan has files but no --out-dir"))?;
            self.generation += 1;
            publish(dir, self.generation, &assembled.files).map_err(|e| {
                AgentError::permanent(format!(
                    "cannot publish the secret files in {}: {e}",
                    dir.display()
                ))
            })?;
        }
        if self.published.is_none() {
            // The env file is read once, when the app starts: written for the first
            // generation only (see docs/design.md, refresh in env mode).
            let env_only = Assembled {
                files: Vec::new(),
                ..assembled.clone()
            };
            init::write(&env_only, None, self.opts.init.env_dir.as_deref())?;
        } else if env_changed {
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
        Ok(())
    }

    /// Renew the token when due; log in again when it cannot be renewed or nears its
    /// max TTL, and replace every lease of the old session.
    async fn keep_token(&mut self) -> Result<(), AgentError> {
        let Some(due) = self.token_renew_at else {
            return Ok(());
        };
        if Instant::now() < due {
            return Ok(());
        }
        let vault = self
            .stores
            .vault
            .as_mut()
            .expect("a due token has a session");
        match vault.renew_self().await {
            Ok(lease) if lease.renewable && renewed_in_full(lease.ttl, self.token_issued_ttl) => {
                tracing::debug!(ttl_seconds = lease.ttl, "renewed the Vault token");
                self.token_renew_at = Some(two_thirds(lease.ttl));
                return Ok(());
            }
            Ok(lease) => tracing::info!(
                ttl_seconds = lease.ttl,
                "the Vault token nears its max TTL; logging in again"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot renew the Vault token; logging in again"),
        }
        self.relogin().await
    }

    /// A new session with the current projected token; the old one's leases are
    /// replaced with new credentials and the old token revoked after the grace period.
    async fn relogin(&mut self) -> Result<(), AgentError> {
        let budget = self.budget(self.cycle_deadline());
        let fresh = Stores::login(&self.opts.init.plan, &self.opts.init.stores, budget).await?;
        let old = std::mem::replace(&mut self.stores, fresh);
        self.token_renew_at = self
            .stores
            .vault
            .as_ref()
            .map(|v| two_thirds(v.token_lease.ttl));
        self.token_issued_ttl = self.stores.vault.as_ref().map_or(0, |v| v.token_lease.ttl);
        tracing::info!("logged in again with the current service-account token");
        // The old token is revoked after the grace period, and its leases with it. Until
        // they are replaced under the new token, they are orphans: if the fetch below
        // fails, the next turns replace them instead of renewing them.
        if let Some(v) = old.vault {
            self.retiring_sessions
                .push((Instant::now() + LEASE_GRACE, v));
        }
        for held in self.leases.values_mut() {
            held.orphaned = true;
        }
        let leased: Vec<SecretRef> = self.leases.keys().cloned().collect();
        if !leased.is_empty() {
            let fetched = self.stores.fetch_locations(&leased, budget).await?;
            // The old leases end with the old token: not revoked one by one.
            for location in &leased {
                self.leases.remove(location);
            }
            self.take(fetched);
            self.publish_if_changed()?;
        }
        Ok(())
    }

    /// Renew each due lease; replace the ones that cannot be renewed or near their max TTL.
    async fn keep_leases(&mut self) -> Result<(), AgentError> {
        let now = Instant::now();
        let due: Vec<SecretRef> = self
            .leases
            .iter()
            .filter(|(_, h)| h.renew_at <= now)
            .map(|(l, _)| l.clone())
            .collect();
        let mut replace = Vec::new();
        for location in due {
            let held = &self.leases[&location];
            if held.orphaned {
                replace.push(location);
                continue;
            }
            let vault = self.stores.vault.as_ref().expect("a lease has a session");
            let result = if held.lease.renewable {
                vault.renew_lease(&held.lease).await
            } else {
                Err(AgentError::permanent("the lease is not renewable"))
            };
            match result {
                // Renewed for its whole TTL: keep it.
                Ok(lease) if renewed_in_full(lease.duration, held.issued_ttl) => {
                    tracing::debug!(secret = %location, ttl_seconds = lease.duration, "renewed a lease");
                    let held = Held {
                        renew_at: two_thirds(lease.duration),
                        issued_ttl: held.issued_ttl,
                        orphaned: false,
                        lease,
                    };
                    self.leases.insert(location, held);
                }
                Ok(lease) => {
                    tracing::info!(secret = %location, ttl_seconds = lease.duration, "the lease nears its max TTL; fetching new credentials");
                    replace.push(location);
                }
                Err(e) => {
                    tracing::warn!(secret = %location, error = %e, "cannot renew the lease; fetching new credentials");
                    replace.push(location);
                }
            }
        }
        if replace.is_empty() {
            return Ok(());
        }
        let fetched = self
            .stores
            .fetch_locations(&replace, self.budget(self.cycle_deadline()))
            .await?;
        self.take(fetched);
        self.publish_if_changed()
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
        let Some(url) = &self.opts.reload_url else {
            return;
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        match client.post(url).send().await {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(url = %url, status = resp.status().as_u16(), "asked the app to reload");
            }
            Ok(resp) => {
                tracing::warn!(url = %url, status = resp.status().as_u16(), "the app's reload endpoint refused; the new files are in place")
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %crate::logging::root_cause_line(&e), "cannot reach the app's reload endpoint; the new files are in place")
            }
        }
    }

    /// Revoke what the grace period has passed for.
    async fn retire(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.retiring = later;
        for (_, lease) in due {
            if let Some(v) = &self.stores.vault
                && let Err(e) = v.revoke_lease(&lease).await
            {
                tracing::info!(error = %e, "could not revoke a replaced lease; it ends at its TTL (allow update on sys/leases/revoke to revoke it at once)");
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring_sessions)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.retiring_sessions = later;
        for (_, v) in due {
            if let Err(e) = v.revoke_self().await {
                tracing::info!(error = %e, "could not revoke a replaced Vault token; it ends at its TTL");
            }
        }
    }

    /// The token and every lease end with the pod.
    async fn shut_down(self) {
        let sessions = self
            .stores
            .vault
            .into_iter()
            .chain(self.retiring_sessions.into_iter().map(|(_, v)| v));
        for v in sessions {
            match v.revoke_self().await {
                Ok(()) => tracing::info!("revoked the Vault token and its leases"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not revoke the Vault token; it ends at its TTL")
                }
            }
        }
    }
}

impl Sidecar {
    /// Log in and do the first fetch; on failure the token is revoked.
    async fn start(opts: RefreshOptions, status: Arc<Status>) -> Result<Sidecar, AgentError> {
        let init = &opts.init;
        let budget = Budget::starting_now(init.deadline, init.concurrency, init.attempt_timeout);
        let stores = Stores::login(&init.plan, &init.stores, budget).await?;
        let token_lease = stores.vault.as_ref().map(|v| v.token_lease);
        let mut sidecar = Sidecar {
            stores,
            values: Default::default(),
            leases: HashMap::new(),
            token_renew_at: token_lease.map(|l| two_thirds(l.ttl)),
            token_issued_ttl: token_lease.map_or(0, |l| l.ttl),
            retiring: Vec::new(),
            retiring_sessions: Vec::new(),
            published: None,
            // A restarted sidecar continues the numbering: never rewrite the live one.
            generation: opts
                .init
                .out_dir
                .as_deref()
                .and_then(crate::files::current_generation)
                .unwrap_or(0),
            status,
            keys: Default::default(),
            failures_in_a_row: 0,
            reload_pending: false,
            opts,
        };
        let first = async {
            let fetched = sidecar
                .stores
                .fetch(&sidecar.opts.init.plan, budget)
                .await?;
            sidecar.take(fetched);
            sidecar.publish_if_changed()
        }
        .await;
        if let Err(e) = first {
            sidecar.shut_down().await;
            return Err(e);
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
        Ok(sidecar)
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
            || self.token_renew_at.is_some_and(|t| t <= now)
            || self.leases.values().any(|h| h.renew_at <= now);
        let result = async {
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
        let status = &self.status;
        match result {
            // A turn that only kept the heartbeat going says nothing about the files.
            Ok(()) if !due => next_refresh,
            Ok(()) => {
                self.failures_in_a_row = 0;
                status.stale.store(false, Ordering::Relaxed);
                status
                    .last_success_unix
                    .store(unix_now(), Ordering::Relaxed);
                if refresh_due {
                    status.refreshes.fetch_add(1, Ordering::Relaxed);
                    Instant::now() + jittered(self.opts.interval, &self.keys)
                } else {
                    next_refresh
                }
            }
            Err(e) => {
                // Keep the last good files; try again later, backing off to the interval,
                // whatever failed: the refresh, the token or a lease.
                self.failures_in_a_row += 1;
                status.failures.fetch_add(1, Ordering::Relaxed);
                status.stale.store(true, Ordering::Relaxed);
                let backoff = Duration::from_secs(5)
                    .saturating_mul(1 << self.failures_in_a_row.min(10))
                    .min(self.opts.interval);
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

/// Run the sidecar until `shutdown` completes.
pub async fn run(
    opts: RefreshOptions,
    status: Arc<Status>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut sidecar = Sidecar::start(opts, status.clone()).await?;
    tokio::pin!(shutdown);
    let mut next_refresh = Instant::now() + jittered(sidecar.opts.interval, &sidecar.keys);
    loop {
        status.heartbeat_unix.store(unix_now(), Ordering::Relaxed);
        let wake = sidecar.next_wake(next_refresh);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        // SIGTERM also ends a slow turn (a store that does not answer): the files are
        // published in one step without awaiting, so nothing is left half done.
        tokio::select! {
            _ = &mut shutdown => break,
            next = sidecar.turn(next_refresh) => next_refresh = next,
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

    #[test]
    fn renewal_and_replacement_times() {
        let soon = two_thirds(30) - Instant::now();
        assert!(soon <= Duration::from_secs(20) && soon > Duration::from_secs(19));
        assert!(two_thirds(0) - Instant::now() > Duration::from_secs(365 * 24 * 3600));
        assert!(renewed_in_full(3600, 3600));
        assert!(
            !renewed_in_full(1200, 3600),
            "capped at the max TTL: replace"
        );
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
