//! The sidecar's Vault session: the token and the leases the files hold. Renewed at 2/3
//! of their TTL; replaced when they cannot be renewed or near their max TTL; what was
//! replaced is revoked only after its replacement is in the files and the grace period
//! has passed, so the app is never left on revoked credentials.

use std::time::Instant;

use super::Sidecar;
use crate::fetch::Stores;
use crate::leases::{Held, LeaseState, expiry, renewed_in_full, two_thirds};
use crate::providers::AgentError;
use contract::reference::SecretRef;

impl Sidecar {
    /// The session in `self.stores` is new: when to renew its token, when it ends.
    pub(super) fn logged_in(&mut self) {
        let lease = self.stores.vault.as_ref().map(|v| v.token_lease);
        self.token_renew_at = lease.map(|l| two_thirds(l.ttl));
        self.token_issued_ttl = lease.map_or(0, |l| l.ttl);
        self.token_expires_at = lease.and_then(|l| expiry(l.ttl));
        self.token_failing = false;
    }

    /// Renew the token when due; log in again when it cannot be renewed or nears its
    /// max TTL, and replace every lease of the old session.
    pub(super) async fn keep_token(&mut self) -> Result<(), AgentError> {
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
                self.token_expires_at = expiry(lease.ttl);
                self.token_failing = false;
                return Ok(());
            }
            Ok(lease) => {
                self.token_expires_at = expiry(lease.ttl);
                tracing::info!(
                    ttl_seconds = lease.ttl,
                    "the Vault token nears its max TTL; logging in again"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the Vault token; logging in again"),
        }
        self.token_failing = true;
        self.relogin().await
    }

    /// A new session with the current projected token. Every lease the files hold is
    /// now an orphan of the old session, due for replacement at once (the old token
    /// takes its leases with it when it ends). The old session is revoked only once
    /// the files hold none of its leases, after the grace period; it is never revoked
    /// before its replacements are written.
    async fn relogin(&mut self) -> Result<(), AgentError> {
        let budget = self.budget(self.cycle_deadline());
        let fresh = Stores::login(&self.opts.init.plan, &self.opts.init.stores, budget).await?;
        let old = std::mem::replace(&mut self.stores, fresh);
        let old_expiry = self.token_expires_at;
        self.logged_in();
        tracing::info!("logged in again with the current service-account token");
        let Some(v) = old.vault else {
            return Ok(());
        };
        if self.leases.is_empty() {
            // Nothing in the files depends on it.
            self.retiring_sessions.push((Instant::now(), v));
            return Ok(());
        }
        let now = Instant::now();
        for held in self.leases.values_mut() {
            held.state = LeaseState::Orphaned;
            held.renew_at = now;
        }
        self.superseded.push((old_expiry, v));
        Ok(())
    }

    /// Renew each due lease; replace the ones that cannot be renewed, near their max TTL
    /// or are orphans of a replaced session. A replacement that fails stays due, and is
    /// retried on the backoff schedule.
    pub(super) async fn keep_leases(&mut self) -> Result<(), AgentError> {
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
            if held.doomed() {
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
                        state: LeaseState::Live,
                        lease,
                    };
                    self.leases.insert(location, held);
                    continue;
                }
                Ok(lease) => {
                    tracing::info!(secret = %location, ttl_seconds = lease.duration, "the lease nears its max TTL; fetching new credentials");
                }
                Err(e) => {
                    tracing::warn!(secret = %location, error = %e, "cannot renew the lease; fetching new credentials");
                }
            }
            if let Some(held) = self.leases.get_mut(&location) {
                held.state = LeaseState::Replace;
            }
            replace.push(location);
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

    /// Revoke what the grace period has passed for; forget replaced sessions that have
    /// expired anyway (their leases, still in the files, are being replaced).
    pub(super) async fn retire(&mut self) {
        let now = Instant::now();
        self.superseded.retain(|(ends, _)| {
            let alive = ends.is_none_or(|e| e > now);
            if !alive {
                tracing::warn!(
                    "a replaced Vault token has expired, and with it the leases the files still hold; replacing them"
                );
            }
            alive
        });
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
            match v.revoke_self().await {
                Ok(()) => tracing::info!("revoked the replaced Vault token"),
                Err(e) => {
                    tracing::info!(error = %e, "could not revoke a replaced Vault token; it ends at its TTL")
                }
            }
        }
    }

    /// The token and every lease end with the pod.
    pub(super) async fn shut_down(self) {
        let now = Instant::now();
        let sessions = self
            .stores
            .vault
            .into_iter()
            .chain(self.retiring_sessions.into_iter().map(|(_, v)| v))
            .chain(
                self.superseded
                    .into_iter()
                    .filter(|(ends, _)| ends.is_none_or(|e| e > now))
                    .map(|(_, v)| v),
            );
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
