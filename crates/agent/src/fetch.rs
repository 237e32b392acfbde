//! The I/O steps of the agent that talk to the stores: log in once, then fetch every
//! location once. Transient failures retry with exponential backoff and jitter until a
//! deadline; permanent ones fail at once. Each failure carries the reference it is about.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;

use crate::providers::aws::{self, Aws};
use crate::providers::azure::Azure;
use crate::providers::gcp::Gcp;
use crate::providers::ssm;
use crate::providers::vault::{Lease, Vault};
use crate::providers::{AgentError, Fetched, Values};
use contract::cloud::{AZURE_ENV, GCP_ENV};
use contract::plan::FetchPlan;
use contract::reference::{Provider, SecretRef, SsmName};

/// How hard to try: one deadline for login and fetch together.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Give up on transient failures at this instant...
    pub until: Instant,
    /// ...which is this long after the start (for the message).
    pub deadline: Duration,
    /// Most locations fetched at once.
    pub concurrency: usize,
    /// Timeout of one request attempt.
    pub attempt_timeout: Duration,
}

impl Budget {
    pub fn starting_now(deadline: Duration, concurrency: usize, attempt_timeout: Duration) -> Self {
        Budget {
            until: Instant::now() + deadline,
            deadline,
            concurrency,
            attempt_timeout,
        }
    }
}

/// How to reach each store and as whom, from the init container's env.
pub use contract::args::StoreSettings;

/// Logged-in clients of the stores a plan uses.
pub struct Stores {
    pub vault: Option<Vault>,
    /// One AWS client (Secrets Manager and Parameter Store) per region: the configured
    /// one (`None`), and each full ARN's.
    aws: BTreeMap<Option<String>, Aws>,
    gcp: Option<Gcp>,
    azure: Option<Azure>,
    /// The plan's Vault references by location, as written (with `#key`): a refused
    /// read's hint shows them corrected.
    vault_written: std::collections::HashMap<SecretRef, Vec<SecretRef>>,
}

/// What one fetch returned: the values by location, and the leases they came with.
pub struct Fetch {
    pub values: Values,
    pub leases: std::collections::HashMap<SecretRef, Lease>,
}

/// Retry `op` on transient errors with exponential backoff and jitter until `deadline`.
async fn retrying<T, F, Fut>(deadline: Instant, op: F) -> Result<T, AgentError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(move |e: &AgentError| e.is_transient() && Instant::now() < deadline)
        // never sleep past the deadline: the last attempt happens at it
        .adjust(move |_: &AgentError, d: Option<Duration>| {
            d.map(|d| d.min(deadline.saturating_duration_since(Instant::now())))
        })
        .notify(|e: &AgentError, after: Duration| {
            tracing::warn!(error = %e, retry_in_ms = after.as_millis() as u64, "transient failure; retrying");
        })
        .await
}

/// A transient failure still there at the deadline says so.
fn gave_up(e: AgentError, deadline: Duration) -> AgentError {
    if e.is_transient() {
        AgentError {
            message: format!(
                "gave up after {}: {}",
                humantime::format_duration(deadline),
                e.message
            ),
            ..e
        }
    } else {
        e
    }
}

/// The region of a full AWS ARN reference (`None`: the configured region).
fn arn_region(r: &SecretRef) -> Option<String> {
    contract::reference::arn_region(&r.path).map(str::to_string)
}

/// The settings of a store the plan uses, or why it cannot be used.
fn needed<'s, T>(
    plan: &FetchPlan,
    provider: Provider,
    settings: Option<&'s T>,
    env: &str,
) -> Result<Option<&'s T>, AgentError> {
    match (plan.uses(provider), settings) {
        (false, _) => Ok(None),
        (true, None) => Err(AgentError::permanent(format!(
            "the plan reads from {provider} but {env} is not set"
        ))),
        (true, Some(s)) => Ok(Some(s)),
    }
}

/// Each location of the plan once, in a stable order.
pub fn locations(plan: &FetchPlan) -> Vec<SecretRef> {
    let mut seen = HashSet::new();
    let mut out: Vec<SecretRef> = plan
        .refs()
        .map(SecretRef::location)
        .filter(|l| seen.insert(l.clone()))
        .collect();
    out.sort_by_cached_key(|r| r.to_string());
    out
}

impl Stores {
    /// Log in to every store the plan uses: Vault with the projected token (retried
    /// until the deadline), an AWS client per region (credentials load on first use).
    pub async fn login(
        plan: &FetchPlan,
        settings: &StoreSettings,
        budget: Budget,
    ) -> Result<Stores, AgentError> {
        let deadline = budget.until;
        let vault_env = contract::names::VAULT_ADDR_ENV;
        let vault = match needed(plan, Provider::Vault, settings.vault.as_ref(), vault_env)? {
            None => None,
            Some(settings) => Some(
                retrying(deadline, || Vault::login(settings.clone()))
                    .await
                    .map_err(|e| gave_up(e, budget.deadline))?,
            ),
        };
        // GCP and Azure get their tokens on first use, like the AWS SDK.
        let timeout = budget.attempt_timeout;
        let gcp = needed(plan, Provider::Gcp, settings.gcp.as_ref(), GCP_ENV)?
            .map(|s| Gcp::new(s.clone(), timeout))
            .transpose()?;
        let azure = needed(plan, Provider::Azure, settings.azure.as_ref(), AZURE_ENV)?
            .map(|s| Azure::new(s.clone(), timeout))
            .transpose()?;
        let aws_region = settings.aws_region.as_deref();
        let mut aws = BTreeMap::new();
        for r in locations(plan).iter().filter(|r| r.provider.is_aws()) {
            let region = arn_region(r);
            if let std::collections::btree_map::Entry::Vacant(slot) = aws.entry(region) {
                let chosen = slot.key().clone().or(aws_region.map(str::to_string));
                slot.insert(Aws::new(chosen, budget.attempt_timeout).await);
            }
        }
        let mut vault_written = std::collections::HashMap::<_, Vec<SecretRef>>::new();
        for r in plan.refs().filter(|r| r.provider == Provider::Vault) {
            vault_written
                .entry(r.location())
                .or_default()
                .push(r.clone());
        }
        Ok(Stores {
            vault,
            aws,
            gcp,
            azure,
            vault_written,
        })
    }

    /// Fetch every location of `plan`: current AWS versions in batches, the rest one by
    /// one, concurrently with a bound. All failures are collected; the first (in the
    /// order of their messages) is returned, with how many more there were.
    pub async fn fetch(&self, plan: &FetchPlan, budget: Budget) -> Result<Fetch, AgentError> {
        self.fetch_locations(&locations(plan), budget).await
    }

    /// [`Stores::fetch`] of some locations only.
    pub async fn fetch_locations(
        &self,
        locations: &[SecretRef],
        budget: Budget,
    ) -> Result<Fetch, AgentError> {
        let deadline = budget.until;
        let mut values = Values::new();
        let mut errors: Vec<AgentError> = Vec::new();
        for (region, client) in &self.aws {
            let current = |provider: Provider| -> Vec<&SecretRef> {
                locations
                    .iter()
                    .filter(|r| r.provider == provider && r.version.is_none())
                    .filter(|r| {
                        r.provider != Provider::Ssm || matches!(r.ssm_name(), SsmName::Parameter(_))
                    })
                    .filter(|r| &arn_region(r) == region)
                    .collect()
            };
            let secrets = current(Provider::Aws);
            if secrets.len() >= 2 {
                batch(
                    client,
                    Batch::SecretsManager,
                    &secrets,
                    deadline,
                    &mut values,
                    &mut errors,
                )
                .await;
            }
            let parameters = current(Provider::Ssm);
            if parameters.len() >= 2 {
                batch(
                    client,
                    Batch::ParameterStore,
                    &parameters,
                    deadline,
                    &mut values,
                    &mut errors,
                )
                .await;
            }
        }
        let answered: HashSet<&SecretRef> =
            errors.iter().filter_map(|e| e.reference.as_ref()).collect();
        let pending: Vec<&SecretRef> = locations
            .iter()
            .filter(|r| !values.contains_key(*r) && !answered.contains(r))
            .collect();
        let results: Vec<_> = futures::stream::iter(pending)
            .map(|r| async move { (r, retrying(deadline, || self.read(r)).await) })
            .buffer_unordered(budget.concurrency.max(1))
            .collect()
            .await;
        let mut leases = std::collections::HashMap::new();
        for (r, result) in results {
            match result {
                Ok((v, lease)) => {
                    values.insert(r.clone(), v);
                    if let Some(lease) = lease {
                        leases.insert(r.clone(), lease);
                    }
                }
                Err(e) => errors.push(gave_up(e.about(r), budget.deadline)),
            }
        }
        if errors.is_empty() {
            return Ok(Fetch { values, leases });
        }
        errors.sort_by(|a, b| a.message.cmp(&b.message));
        let more = errors.len() - 1;
        let mut first = errors.swap_remove(0);
        if more > 0 {
            first.message = format!("{} (and {more} more failures)", first.message);
        }
        Err(first)
    }

    /// One read of one location.
    async fn read(&self, r: &SecretRef) -> Result<(Fetched, Option<Lease>), AgentError> {
        match r.provider {
            Provider::Vault => match &self.vault {
                Some(vault) => {
                    let written = self.vault_written.get(r).map_or(&[][..], Vec::as_slice);
                    vault.read_written(r, written).await
                }
                None => Err(AgentError::permanent(format!(
                    "{r}: not logged in to Vault"
                ))),
            },
            Provider::Aws | Provider::Ssm => match self.aws.get(&arn_region(r)) {
                Some(aws) if r.provider == Provider::Ssm => aws.ssm_get(r).await.map(|v| (v, None)),
                Some(aws) => aws.get(r).await.map(|v| (v, None)),
                None => Err(AgentError::permanent(format!(
                    "{r}: no AWS client for its region"
                ))),
            },
            Provider::Gcp => match &self.gcp {
                Some(gcp) => gcp.get(r).await.map(|v| (v, None)),
                None => Err(AgentError::permanent(format!("{r}: no GCP settings"))),
            },
            Provider::Azure => match &self.azure {
                Some(azure) => azure.get(r).await.map(|v| (v, None)),
                None => Err(AgentError::permanent(format!("{r}: no Azure settings"))),
            },
        }
    }
}

/// The AWS batch calls.
#[derive(Clone, Copy)]
enum Batch {
    /// `BatchGetSecretValue`, [`aws::BATCH_LIMIT`] per call.
    SecretsManager,
    /// `GetParameters`, [`ssm::BATCH_LIMIT`] per call.
    ParameterStore,
}

impl Batch {
    fn name(self) -> &'static str {
        match self {
            Batch::SecretsManager => "BatchGetSecretValue",
            Batch::ParameterStore => "GetParameters",
        }
    }
}

/// Current versions of several AWS secrets or parameters, in as few calls as the API
/// allows. Values and permanent failures are kept; what a batch leaves unanswered, or
/// answers with a transient failure, is fetched on its own afterwards.
async fn batch(
    client: &Aws,
    kind: Batch,
    refs: &[&SecretRef],
    deadline: Instant,
    values: &mut Values,
    errors: &mut Vec<AgentError>,
) {
    let limit = match kind {
        Batch::SecretsManager => aws::BATCH_LIMIT,
        Batch::ParameterStore => ssm::BATCH_LIMIT,
    };
    for chunk in refs.chunks(limit) {
        let answer = retrying(deadline, || async {
            match kind {
                Batch::SecretsManager => client.batch(chunk).await,
                Batch::ParameterStore => client.ssm_batch(chunk).await,
            }
        })
        .await;
        match answer {
            Ok(results) => {
                let answered = results.iter().filter(|(_, v)| v.is_some()).count();
                tracing::debug!(
                    call = kind.name(),
                    asked = chunk.len(),
                    answered,
                    "batch call"
                );
                for (r, result) in results {
                    match result {
                        Some(Ok(v)) => {
                            values.insert(r.clone(), v);
                        }
                        Some(Err(e)) if !e.is_transient() => errors.push(e),
                        _ => {}
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "the batch call failed; fetching one by one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::reference::parse;

    /// Every reference into one location is one read, whatever its `#key`.
    #[test]
    fn each_location_is_read_once() {
        let r = |s: &str| parse(s).unwrap();
        let plan = FetchPlan {
            secrets: [
                ("a".to_string(), r("vault:kv/db#password")),
                ("b".to_string(), r("aws:app?version-stage=AWSPREVIOUS")),
            ]
            .into(),
            env: [("USER".to_string(), r("vault:kv/db#username"))].into(),
            env_from: vec![r("aws:app")],
            ..FetchPlan::default()
        };
        let got: Vec<String> = locations(&plan).iter().map(|l| l.to_string()).collect();
        assert_eq!(
            got,
            [
                "aws:app",
                "aws:app?version-stage=AWSPREVIOUS",
                "vault:kv/db"
            ]
        );
    }

    #[test]
    fn a_full_arn_picks_its_own_region() {
        let arn =
            parse("aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf").unwrap();
        assert_eq!(arn_region(&arn).as_deref(), Some("eu-west-1"));
        assert_eq!(arn_region(&parse("aws:team/db").unwrap()), None);
    }

    #[test]
    fn giving_up_keeps_the_reference_and_says_how_long() {
        let r = parse("vault:kv/db").unwrap();
        let e = gave_up(
            AgentError::transient("vault:kv/db: timed out").about(&r),
            Duration::from_secs(120),
        );
        assert_eq!(e.message, "gave up after 2m: vault:kv/db: timed out");
        assert_eq!(e.reference, Some(r));
        let permanent = AgentError::permanent("x");
        assert_eq!(
            gave_up(permanent.clone(), Duration::from_secs(1)),
            permanent
        );
    }
}
