//! Secret references: `<provider>:<path>[?<params>][#<key>]` (SPEC section 2).
//!
//! Pure parsing: no I/O. A reference names where a secret lives; it never holds a value,
//! so it can be shown in pod specs, logs and error messages.

use std::fmt;

use serde::{Deserialize, Serialize};

mod stores;
pub use stores::{AZURE_VAULT_SUFFIXES, AzureSecret, GcpSecret, SsmName, arn_region};

/// The secret stores a reference can point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Vault,
    /// AWS Secrets Manager.
    Aws,
    /// AWS Systems Manager Parameter Store.
    Ssm,
    /// Google Secret Manager.
    Gcp,
    /// Azure Key Vault.
    Azure,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Vault,
        Provider::Aws,
        Provider::Ssm,
        Provider::Gcp,
        Provider::Azure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Vault => "vault",
            Provider::Aws => "aws",
            Provider::Ssm => "ssm",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
        }
    }

    /// Whether the store is reached with an AWS identity (IRSA, EKS Pod Identity).
    pub fn is_aws(self) -> bool {
        matches!(self, Provider::Aws | Provider::Ssm)
    }

    fn example(self) -> &'static str {
        match self {
            Provider::Vault => "vault:secret/data/prod/db#password",
            Provider::Aws => "aws:prod/cnpg/postgres-credentials#password",
            Provider::Ssm => "ssm:/prod/db/password",
            Provider::Gcp => "gcp:projects/my-project/secrets/db-password",
            Provider::Azure => "azure:my-vault/db-password",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which version of a secret to read. (Google Secret Manager names its version in the
/// path: `.../versions/3`.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Vault KV v2 and SSM `?version=N`.
    Number(u64),
    /// AWS `?version-stage=AWSPREVIOUS`.
    Stage(String),
    /// AWS `?version-id=...`; Azure `?version=<32 hex digits>`.
    Id(String),
    /// SSM `?label=L`.
    Label(String),
}

/// A parsed reference. `Display` gives back the canonical text form, which is also its
/// serialized form (so specs handed to the init container stay readable).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SecretRef {
    pub provider: Provider,
    pub path: String,
    pub version: Option<Version>,
    pub key: Option<String>,
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for SecretRef {
    type Error = RefError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse(&s)
    }
}

impl SecretRef {
    /// The secret as a whole (provider, path and version), without the `#key`.
    /// Two references with the same location are fetched once.
    pub fn location(&self) -> SecretRef {
        SecretRef {
            key: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.path)?;
        match &self.version {
            Some(Version::Number(n)) => write!(f, "?version={n}")?,
            Some(Version::Stage(s)) => write!(f, "?version-stage={s}")?,
            Some(Version::Id(s)) if self.provider == Provider::Azure => write!(f, "?version={s}")?,
            Some(Version::Id(s)) => write!(f, "?version-id={s}")?,
            Some(Version::Label(s)) => write!(f, "?label={s}")?,
            None => {}
        }
        if let Some(key) = &self.key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

/// Why a reference is not valid; the message says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefError(pub String);

const SYNTAX: &str = "<provider>:<path>[?<params>][#<key>]";

impl std::str::FromStr for SecretRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parse a reference, returning a message fit for an admission denial on error.
pub fn parse(input: &str) -> Result<SecretRef, RefError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(RefError(format!(
            "the reference is empty; write {SYNTAX}, for example {}",
            Provider::Vault.example()
        )));
    }
    let Some((provider, rest)) = s.split_once(':') else {
        return Err(RefError(format!(
            "`{s}` has no provider; write {SYNTAX}, for example {} or {}",
            Provider::Vault.example(),
            Provider::Aws.example()
        )));
    };
    let Some(provider) = Provider::ALL.into_iter().find(|p| p.as_str() == provider) else {
        let hint = closest(provider, Provider::ALL.iter().map(|p| p.as_str()))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(RefError(format!(
            "unknown provider `{}`{hint}; known providers are {}, for example {}",
            crate::text::Escaped(provider),
            Provider::ALL.map(|p| format!("`{p}`")).join(", "),
            Provider::Vault.example()
        )));
    };
    if rest.starts_with(char::is_whitespace) && !rest.trim_start().is_empty() {
        return Err(RefError(format!(
            "there is a space after `{provider}:`; remove it: write {provider}:{} (a reference has no space after its provider)",
            crate::text::Escaped(rest.trim_start())
        )));
    }
    let (rest, key) = match rest.split_once('#') {
        Some((rest, key)) => {
            if key.is_empty() {
                return Err(RefError(format!(
                    "the key after `#` is empty; remove the `#` to use the whole secret, or name a key, for example {}",
                    provider.example()
                )));
            }
            if key.chars().any(char::is_control) {
                return Err(RefError(
                    "the key after `#` contains control characters".to_string(),
                ));
            }
            (rest, Some(key.to_string()))
        }
        None => (rest, None),
    };
    let (path, params) = match rest.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(RefError(format!(
            "the path is empty; name the secret after `{provider}:`, for example {}",
            provider.example()
        )));
    }
    let (path, version) = stores::check(provider, path, params)?;
    Ok(SecretRef {
        provider,
        path,
        version,
        key,
    })
}

/// At most the first 20 names, comma-separated, each escaped and cut (they may come
/// from the request): messages stay short whatever the pod.
pub fn short_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let mut shown = Vec::new();
    let mut total = 0usize;
    for name in names {
        if total < SHOWN {
            shown.push(crate::text::Escaped(name).to_string());
        }
        total += 1;
    }
    let mut out = shown.join(", ");
    if total > SHOWN {
        out.push_str(&format!(", … ({total} in all)"));
    }
    out
}

/// Longest word (and candidate) that gets a "did you mean" suggestion: typos are in
/// names people type, and the edit distance costs `len(word) * len(candidate)`.
pub const MAX_SUGGEST_LEN: usize = 64;
/// Most candidates compared for one suggestion.
const MAX_SUGGEST_CANDIDATES: usize = 256;

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
///
/// Bounded whatever the input: words or candidates longer than [`MAX_SUGGEST_LEN`] get
/// no suggestion, and only the first [`MAX_SUGGEST_CANDIDATES`] candidates are compared,
/// so one call costs at most 256 * 64 * 64 steps.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_SUGGEST_LEN {
        return None;
    }
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .take(MAX_SUGGEST_CANDIDATES)
        .filter(|c| c.len() <= MAX_SUGGEST_LEN)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_bounded_for_long_input() {
        assert_eq!(closest("vualt", ["vault", "aws"]), Some("vault"));
        let long = "x-".repeat(1000);
        // Too long to compare: no suggestion, even for an exact match.
        assert_eq!(closest(&long, [long.as_str()]), None);
        let many: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        // Only the first candidates are compared.
        assert_eq!(closest("c9", many.iter().map(String::as_str)), Some("c9"));
        assert_eq!(closest("c99999", many.iter().map(String::as_str)), None);
    }

    fn ok(s: &str) -> SecretRef {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        parse(s).expect_err(s).0
    }

    #[test]
    fn parses_vault_kv_with_key_and_version() {
        let r = ok("vault:secret/data/prod/db?version=3#password");
        assert_eq!(r.provider, Provider::Vault);
        assert_eq!(r.path, "secret/data/prod/db");
        assert_eq!(r.version, Some(Version::Number(3)));
        assert_eq!(r.key.as_deref(), Some("password"));
        assert_eq!(
            r.to_string(),
            "vault:secret/data/prod/db?version=3#password"
        );
    }

    #[test]
    fn parses_dynamic_credentials_without_key() {
        let r = ok("vault:database/creds/app");
        assert_eq!(r.key, None);
        assert_eq!(r.version, None);
    }

    #[test]
    fn parses_aws_names_arns_and_versions() {
        let r = ok("aws:prod/cnpg/postgres-credentials#password");
        assert_eq!(r.provider, Provider::Aws);
        assert_eq!(r.path, "prod/cnpg/postgres-credentials");
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
        let r = ok(&format!("aws:{arn}#username"));
        assert_eq!(r.path, arn);
        assert_eq!(r.key.as_deref(), Some("username"));
        assert_eq!(
            ok("aws:prod/db?version-stage=AWSPREVIOUS").version,
            Some(Version::Stage("AWSPREVIOUS".into()))
        );
        let id = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE";
        assert_eq!(
            ok(&format!("aws:prod/db?version-id={id}")).version,
            Some(Version::Id(id.into()))
        );
    }

    #[test]
    fn location_drops_the_key_only() {
        let r = ok("vault:secret/data/a?version=2#k");
        assert_eq!(r.location().to_string(), "vault:secret/data/a?version=2");
    }

    #[test]
    fn rejects_unknown_provider_with_suggestion() {
        let m = err("vualt:secret/data/x");
        assert!(m.contains("unknown provider `vualt`"), "{m}");
        assert!(m.contains("did you mean `vault`"), "{m}");
        assert!(err("gpc:projects/x").contains("did you mean `gcp`"));
        assert!(
            err("s3:bucket/x")
                .contains("known providers are `vault`, `aws`, `ssm`, `gcp`, `azure`")
        );
    }

    /// `"aws: prod/db"` (a YAML value quoted with its space): the space is named, and the
    /// reference it suggests parses.
    #[test]
    fn a_space_after_the_provider_is_named_with_the_fix() {
        let m = err("aws: prod/db#password");
        assert!(
            m.contains("there is a space after `aws:`; remove it: write aws:prod/db#password"),
            "{m}"
        );
        assert!(parse("aws:prod/db#password").is_ok());
        assert!(err("vault:  secret/data/x").contains("write vault:secret/data/x"));
    }

    #[test]
    fn rejects_empty_and_missing_parts() {
        assert!(err("").contains("empty"));
        assert!(err("vault:").contains("path is empty"));
        assert!(err("aws:#key").contains("path is empty"));
        assert!(err("secret/data/x").contains("no provider"));
        assert!(err("vault:secret/data/x#").contains("key after `#` is empty"));
    }

    #[test]
    fn rejects_bad_params() {
        assert!(err("vault:secret/data/x?version=abc").contains("positive whole number"));
        assert!(err("vault:secret/data/x?version=0").contains("positive whole number"));
        assert!(err("vault:secret/data/x?verison=2").contains("did you mean `version`"));
        assert!(err("vault:secret/data/x?version").contains("has no value"));
        assert!(err("aws:db?version=2").contains("unknown parameter `version` for aws"));
        assert!(err("aws:db?version-stage=A&version-stage=B").contains("more than one"));
        assert!(err("aws:db?version-id=short").contains("version id"));
        assert!(err("aws:db?version-stage=").contains("staging label"));
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(err("vault:/secret/data/x").contains("must not start or end"));
        assert!(err("vault:secret/../sys/x").contains("`..`"));
        assert!(err("vault:secret//x").contains("empty"));
        assert!(err("vault:secret/a b").contains("not allowed"));
        assert!(err("aws:prod db").contains("letters, digits"));
        assert!(err("aws:arn:aws:s3:::bucket").contains("not a Secrets Manager ARN"));
    }
}
