//! The refresh sidecar's bookkeeping of Vault leases and sessions: when each is renewed,
//! which must be replaced, and when a replaced one may be revoked. Pure: no I/O.

use std::time::{Duration, Instant};

use crate::providers::vault::Lease;

/// What the sidecar does with a lease the files hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed at 2/3 of its TTL.
    Live,
    /// It could not be renewed, or nears its max TTL: replace it, with backoff until that
    /// succeeds. The files hold credentials that are going.
    Replace,
    /// Issued under a Vault token that was replaced by a new login: it ends with that
    /// token, so replace it now. The old token is revoked only once no lease of it is
    /// left in the files.
    Orphaned,
}

/// A lease held for the app, and when to renew (or replace) it.
#[derive(Clone, Debug)]
pub struct Held {
    pub lease: Lease,
    /// Its TTL when it was issued: a renewal that gives less means the lease nears its
    /// max TTL.
    pub issued_ttl: u64,
    pub renew_at: Instant,
    pub state: LeaseState,
}

impl Held {
    /// A lease just issued.
    pub fn issued(lease: Lease) -> Held {
        Held {
            renew_at: two_thirds(lease.duration),
            issued_ttl: lease.duration,
            state: LeaseState::Live,
            lease,
        }
    }

    /// Whether the credentials of this lease are going away: the files hold credentials
    /// that must be replaced.
    pub fn doomed(&self) -> bool {
        self.state != LeaseState::Live
    }
}

/// 2/3 of a TTL from now: when a token or a lease is renewed. A TTL of 0 never expires.
pub fn two_thirds(ttl_seconds: u64) -> Instant {
    let ttl = if ttl_seconds == 0 {
        // 100 years: never, as far as this pod is concerned
        100 * 365 * 24 * 3600
    } else {
        ttl_seconds.max(3)
    };
    Instant::now() + Duration::from_secs(ttl * 2 / 3)
}

/// When a token or lease with this TTL, granted now, ends (`None`: never).
pub fn expiry(ttl_seconds: u64) -> Option<Instant> {
    (ttl_seconds > 0).then(|| Instant::now() + Duration::from_secs(ttl_seconds))
}

/// Whether a renewal gave the whole TTL at issue. Less means Vault capped it at the max
/// TTL, which is then less than one TTL away: time to replace, not to renew again.
pub fn renewed_in_full(ttl: u64, issued_ttl: u64) -> bool {
    ttl >= issued_ttl
}

/// How long to wait after `failures_in_a_row` failed turns: 5 s doubling, at most the
/// refresh interval; at most [`DOOMED_RETRY_CAP`] while the files hold credentials that
/// are going (their token or lease ends soon: a replacement cannot wait an interval).
pub fn backoff(failures_in_a_row: u32, interval: Duration, doomed: bool) -> Duration {
    let cap = if doomed {
        interval.min(DOOMED_RETRY_CAP)
    } else {
        interval
    };
    Duration::from_secs(5)
        .saturating_mul(1 << failures_in_a_row.min(10))
        .min(cap)
}

/// The longest wait between two attempts to replace credentials that are going.
pub const DOOMED_RETRY_CAP: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(duration: u64) -> Lease {
        Lease {
            id: "database/creds/x/abc".into(),
            duration,
            renewable: true,
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
        assert!(expiry(0).is_none());
        let end = expiry(10).unwrap() - Instant::now();
        assert!(end <= Duration::from_secs(10) && end > Duration::from_secs(9));
    }

    #[test]
    fn a_fresh_lease_is_live_and_only_live_ones_are_safe() {
        let mut held = Held::issued(lease(60));
        assert_eq!(held.state, LeaseState::Live);
        assert_eq!(held.issued_ttl, 60);
        assert!(!held.doomed());
        for state in [LeaseState::Replace, LeaseState::Orphaned] {
            held.state = state;
            assert!(held.doomed(), "{state:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped_shorter_while_credentials_are_going() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(1, hour, false), Duration::from_secs(10));
        assert_eq!(backoff(3, hour, false), Duration::from_secs(40));
        assert_eq!(backoff(20, hour, false), hour);
        assert_eq!(backoff(3, hour, true), DOOMED_RETRY_CAP);
        assert_eq!(backoff(1, hour, true), Duration::from_secs(10));
        assert_eq!(
            backoff(5, Duration::from_secs(1), true),
            Duration::from_secs(1),
            "never longer than the interval"
        );
    }
}
