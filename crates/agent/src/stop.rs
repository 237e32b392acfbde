//! SIGTERM at any moment of `init` and `refresh`: what was issued is revoked, and the
//! process exits promptly. The signal is watched from the start, not only once the
//! first fetch is done (that may take the whole `--deadline`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::fetch::{Budget, StoreSettings, Stores};
use crate::providers::AgentError;
use contract::plan::FetchPlan;

/// A login in flight when SIGTERM comes gets this long to finish, so that the token it
/// may already have been issued is revoked rather than left to its TTL.
pub const LOGIN_GRACE: Duration = Duration::from_secs(5);

/// The one line of an `init` stopped by SIGTERM before the secrets were written.
pub const STOPPED: &str = "stopped by SIGTERM before the secrets were written; nothing was written and the Vault token is revoked";

pub use runtime::signal::terminated;

/// Log in to the stores of `plan`, unless `stop` completes first. `Ok(None)`: stopped;
/// a Vault token issued meanwhile has been revoked.
pub async fn login<S: Future<Output = ()>>(
    plan: &FetchPlan,
    settings: &StoreSettings,
    budget: Budget,
    stop: Pin<&mut S>,
) -> Result<Option<Stores>, AgentError> {
    let login = Stores::login(plan, settings, budget);
    tokio::pin!(login);
    tokio::select! {
        stores = &mut login => stores.map(Some),
        _ = stop => {
            if let Ok(Ok(stores)) = tokio::time::timeout(LOGIN_GRACE, login).await {
                revoke(&stores).await;
            }
            Ok(None)
        }
    }
}

/// Revoke the Vault token of `stores` (and with it every lease it holds), if any.
pub async fn revoke(stores: &Stores) {
    if let Some(v) = &stores.vault {
        match v.revoke_self().await {
            Ok(()) => tracing::info!("SIGTERM: revoked the Vault token and its leases"),
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM: could not revoke the Vault token; it ends at its TTL")
            }
        }
    }
}
