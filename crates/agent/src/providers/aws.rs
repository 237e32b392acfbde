//! AWS Secrets Manager (and, in `ssm.rs`, Parameter Store) through the AWS SDK's default credential chain (web identity via
//! `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, EKS Pod Identity, env keys) and its
//! usual env (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
//!
//! Several secrets of a pod are read with `BatchGetSecretValue` (20 per call), because
//! the per-account request quotas are what large rollouts hit. The SDK's own retries are
//! off: the caller retries transient errors with one backoff and one deadline.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeDeserializationInterceptorContextRef,
};
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::rest::{quote, quote_long, size_text};
use super::{AgentError, Fetched};
use contract::names;
use contract::reference::{SecretRef, Version};
use contract::text::{causes, chain_line, escape_invisible, root_cause_line};

/// The largest answer taken from Secrets Manager or Parameter Store, by its declared
/// `Content-Length`. A secret holds at most 64 KiB and `BatchGetSecretValue` answers 20:
/// 1.25 MiB, 1.7 MiB as base64, and 8 MiB even if every character were a control
/// character that JSON writes as `\u00XX`. Parameters are at most 8 KiB, 10 per answer.
///
/// The SDK reads the body itself; [`BoundedAnswers`] refuses a declared length over the
/// bound before that read, and wraps a body without one in a length limit. The SDK's own
/// credential calls (STS, IMDS, Pod Identity) go through aws-config's internal clients,
/// which take no interceptor: they are not bounded here.
pub const MAX_ANSWER: u64 = 8 << 20;

/// Refuses an answer whose declared length is over [`MAX_ANSWER`] before the SDK reads
/// its body (the error reaches [`classify`] as a response error).
#[derive(Debug)]
struct BoundedAnswers;

/// An answer refused by [`BoundedAnswers`]: its declared length.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "answered with {} bytes, more than the {} the agent reads from it; not read",
            self.0,
            size_text(MAX_ANSWER as usize)
        )
    }
}

impl std::error::Error for TooLarge {}

impl Intercept for BoundedAnswers {
    fn name(&self) -> &'static str {
        "BoundedAnswers"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = context.response();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| response.body().content_length());
        match declared {
            Some(n) if n > MAX_ANSWER => Err(Box::new(TooLarge(n))),
            _ => Ok(()),
        }
    }

    /// An answer without a declared length is read through a limit: cut, with
    /// `LengthLimitError`, as soon as it passes [`MAX_ANSWER`], never held whole.
    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use aws_smithy_types::body::SdkBody;
        let body = context.response_mut().body_mut();
        let read = std::mem::replace(body, SdkBody::taken());
        *body = SdkBody::from_body_1_x(http_body_util::Limited::new(read, MAX_ANSWER as usize));
        Ok(())
    }
}

/// Largest batch `BatchGetSecretValue` accepts.
pub const BATCH_LIMIT: usize = 20;

pub struct Aws {
    client: Client,
    /// Parameter Store, with the same configuration and credentials.
    pub(super) ssm: aws_sdk_ssm::Client,
    pub(super) identity: String,
    /// Where the SDK gets this identity's credentials, for "cannot reach" messages.
    credential_source: &'static str,
}

const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "InternalServerError",
];

/// Whether a service error is worth retrying: throttling and server-side codes, and
/// any 408, 429 or 5xx, whatever its body says (a load balancer's 503 page or a
/// proxy's 408 has no code).
fn transient_service_error(code: Option<&str>, status: u16) -> bool {
    code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        || matches!(status, 408 | 429)
        || status >= 500
}

/// Credential problems that retrying cannot fix.
fn credentials_refused(text: &str) -> bool {
    [
        "AccessDenied",
        "InvalidIdentityToken",
        "ExpiredToken",
        "no credentials",
        "NoCredentials",
        "CredentialsNotLoaded",
        "failed to load credentials",
        "web identity token",
        "No such file",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Classify an SDK error of `service`; the message names the reference and identity,
/// never a value.
pub(super) fn classify<E>(
    e: &SdkError<E, HttpResponse>,
    what: &str,
    aws: &Aws,
    service: &str,
) -> AgentError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let identity = &aws.identity;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let status = se.raw().status().as_u16();
            // A body that is not an AWS error (a proxy's page, an emulator's XML) has
            // no code: say the status instead.
            // Code and message come from the network: escaped (no forged line, no
            // terminal escape) and cut.
            let code = err
                .code()
                .map_or_else(|| format!("HTTP {status} without an AWS error code"), quote);
            let msg = match err.message() {
                Some(m) if !m.trim().is_empty() => format!(": {}", quote_long(m, 1000)),
                _ => String::new(),
            };
            if transient_service_error(err.code(), status) {
                AgentError::transient(format!("{what}: {code}{msg}"))
            } else {
                AgentError::permanent(format!("{what}: {code} for {identity}{msg}"))
            }
        }
        SdkError::TimeoutError(_) => {
            AgentError::transient(format!("{what}: timed out as {identity}"))
        }
        // Only the status: the parser's error quotes the bytes it choked on, and in a
        // GetSecretValue answer those belong to the secret.
        SdkError::ResponseError(re) => {
            if let Some(big) = causes(e).find_map(|c| c.downcast_ref::<TooLarge>()) {
                return AgentError::permanent(format!("{what}: {service} {big}"));
            }
            if causes(e).any(|c| c.is::<http_body_util::LengthLimitError>()) {
                return AgentError::permanent(format!(
                    "{what}: {service} answered with more than the {} the agent reads from it; not read",
                    size_text(MAX_ANSWER as usize)
                ));
            }
            let s = re.raw().status().as_u16();
            if s >= 400 && !transient_service_error(None, s) {
                AgentError::permanent(format!(
                    "{what}: HTTP {s} with an unreadable body for {identity}"
                ))
            } else {
                AgentError::transient(format!("{what}: unreadable response (HTTP {s})"))
            }
        }
        SdkError::DispatchFailure(df) => {
            let text = escape_invisible(&chain_line(e));
            // Credentials are resolved while dispatching: a refusal or a missing
            // identity is permanent.
            if credentials_refused(&text) {
                AgentError::permanent(format!(
                    "{what}: no usable AWS credentials for {identity}: {text}"
                ))
            } else if df.is_io()
                || df.is_timeout()
                || df.is_other()
                || text.contains("dispatch failure")
            {
                // Credentials are loaded on the first call: STS for web identity,
                // the Pod Identity agent, ...
                let service = if text.contains("loading credentials")
                    || text.contains("provider timed out")
                {
                    aws.credential_source
                } else {
                    service
                };
                AgentError::transient(format!(
                    "{what}: cannot reach {service} as {identity}: {}",
                    escape_invisible(&root_cause_line(e))
                ))
            } else {
                AgentError::permanent(format!("{what}: {}", escape_invisible(&root_cause_line(e))))
            }
        }
        _ => {
            let text = escape_invisible(&chain_line(e));
            if credentials_refused(&text) {
                AgentError::permanent(format!(
                    "{what}: no usable AWS credentials for {identity}: {text}"
                ))
            } else {
                AgentError::permanent(format!("{what}: {text}"))
            }
        }
    }
}

impl Aws {
    /// Build a client from the default chain; `region` overrides the env's.
    pub async fn new(region: Option<String>, attempt_timeout: Duration) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            );
        if let Some(r) = region.filter(|r| !r.is_empty()) {
            loader = loader.region(aws_config::Region::new(r));
        }
        let config = loader.load().await;
        let (identity, credential_source) = match std::env::var(names::AWS_ROLE_ARN_ENV) {
            Ok(arn) if !arn.is_empty() => (
                format!("AWS role {arn} (web identity)"),
                "STS for credentials",
            ),
            _ if std::env::var_os(names::AWS_CONTAINER_CREDENTIALS_FULL_URI_ENV).is_some() => (
                "AWS EKS Pod Identity".to_string(),
                "the EKS Pod Identity agent for credentials",
            ),
            _ => (
                "the AWS default credential chain".to_string(),
                "the credential source",
            ),
        };
        let sm = aws_sdk_secretsmanager::config::Builder::from(&config)
            .interceptor(BoundedAnswers)
            .build();
        let ssm = aws_sdk_ssm::config::Builder::from(&config)
            .interceptor(BoundedAnswers)
            .build();
        Aws {
            client: Client::from_conf(sm),
            ssm: aws_sdk_ssm::Client::from_conf(ssm),
            identity,
            credential_source,
        }
    }

    /// `GetSecretValue` of one location (name or ARN, with its version).
    pub async fn get(&self, r: &SecretRef) -> Result<Fetched, AgentError> {
        let what = r.location().to_string();
        let mut req = self.client.get_secret_value().secret_id(&r.path);
        match &r.version {
            Some(Version::Stage(s)) => req = req.version_stage(s),
            Some(Version::Id(id)) => req = req.version_id(id),
            _ => {}
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify(&e, &what, self, "Secrets Manager"))?;
        if let Some(s) = out.secret_string {
            Ok(Fetched::from_secret_string(s))
        } else if let Some(b) = out.secret_binary {
            Ok(Fetched::Binary(b.into_inner()))
        } else {
            Err(AgentError::permanent(format!(
                "{what}: the secret has no value"
            )))
        }
    }

    /// `BatchGetSecretValue` of up to [`BATCH_LIMIT`] current versions. Each reference
    /// gets its own answer: a value, a failure about it, or `None` when the batch did not
    /// answer it (then it is fetched on its own).
    pub async fn batch<'r>(
        &self,
        refs: &[&'r SecretRef],
    ) -> Result<Vec<(&'r SecretRef, Option<Result<Fetched, AgentError>>)>, AgentError> {
        let what = format!("BatchGetSecretValue of {} secrets", refs.len());
        let ids: Vec<String> = refs.iter().map(|r| r.path.clone()).collect();
        let out = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids))
            .send()
            .await
            .map_err(|e| classify(&e, &what, self, "Secrets Manager"))?;
        let mut results: Vec<(&SecretRef, Option<Result<Fetched, AgentError>>)> =
            refs.iter().map(|r| (*r, None)).collect();
        let mut answer = |id: &str, result: Result<Fetched, AgentError>| {
            for (r, slot) in results.iter_mut().filter(|(r, _)| r.path == id) {
                *slot = Some(result.clone().map_err(|e| e.about(r)));
            }
        };
        for entry in out.secret_values.unwrap_or_default() {
            let value = if let Some(s) = entry.secret_string {
                Fetched::from_secret_string(s)
            } else if let Some(b) = entry.secret_binary {
                Fetched::Binary(b.into_inner())
            } else {
                continue;
            };
            // The batch answers with both: a reference may use either.
            for id in [&entry.name, &entry.arn].into_iter().flatten() {
                answer(id, Ok(value.clone()));
            }
        }
        for err in out.errors.unwrap_or_default() {
            let Some(id) = err.secret_id else { continue };
            // All three come from the network: quoted escaped.
            let code = err.error_code.unwrap_or_default();
            let transient = TRANSIENT_CODES.contains(&code.as_str());
            let (code, msg) = (
                quote(&code),
                quote_long(&err.message.unwrap_or_default(), 1000),
            );
            let what = format!("aws:{}", quote(&id));
            let e = if transient {
                AgentError::transient(format!("{what}: {code}: {msg}"))
            } else {
                AgentError::permanent(format!("{what}: {code} for {}: {msg}", self.identity))
            };
            answer(&id, Err(e));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_and_server_statuses_are_transient() {
        assert!(transient_service_error(Some("ThrottlingException"), 400));
        assert!(transient_service_error(Some("InternalServiceError"), 500));
        assert!(
            transient_service_error(None, 503),
            "a 503 page without a code"
        );
        assert!(transient_service_error(None, 429));
        assert!(
            transient_service_error(None, 408),
            "a proxy's request timeout"
        );
        assert!(transient_service_error(Some("SomethingNew"), 502));
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn context_joins_causes_once_without_debug_output() {
        let e = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "other",
                Some(Box::new(Layer("no  credentials\n found", None))),
            ))),
        );
        assert_eq!(
            chain_line(&e),
            "dispatch failure: other: no credentials found"
        );
        let repeated = Layer("io error: refused", Some(Box::new(Layer("refused", None))));
        assert_eq!(chain_line(&repeated), "io error: refused");
    }

    #[test]
    fn refusals_and_client_errors_are_permanent() {
        assert!(!transient_service_error(Some("AccessDeniedException"), 400));
        assert!(!transient_service_error(
            Some("ResourceNotFoundException"),
            400
        ));
        assert!(!transient_service_error(Some("DecryptionFailure"), 400));
        assert!(
            !transient_service_error(None, 403),
            "an XML 403 is still a 403"
        );
        assert!(!transient_service_error(None, 404));
    }
}
