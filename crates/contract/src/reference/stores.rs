//! What each store accepts as a path and as parameters, and where a reference points
//! once parsed. Pure: the webhook checks references with it at admission, and the pod
//! reads the same structures to build its requests.

use super::{Provider, RefError, SecretRef, Version, closest};

/// Check `path` and `params` for `provider`; return the canonical path and the version.
pub(super) fn check(
    provider: Provider,
    path: &str,
    params: Option<&str>,
) -> Result<(String, Option<Version>), RefError> {
    let version = match params {
        Some(params) => parse_params(provider, params)?,
        None => None,
    };
    let path = match provider {
        Provider::Vault => vault_path(path)?,
        Provider::Aws => aws_path(path)?,
        Provider::Ssm => ssm_path(path, version.is_some())?,
        Provider::Gcp => gcp_path(path)?,
        Provider::Azure => return azure_path(path, version),
    };
    Ok((path, version))
}

fn vault_path(path: &str) -> Result<String, RefError> {
    let example = Provider::Vault.example();
    if path.starts_with('/') || path.ends_with('/') {
        return Err(RefError(format!(
            "the Vault path `{path}` must not start or end with `/`; write the API path without `/v1/`, for example {example}"
        )));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(RefError(format!(
            "the Vault path `{path}` has an empty, `.` or `..` segment; for example {example}"
        )));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '\\'))
    {
        return Err(RefError(format!(
            "the Vault path `{path}` contains the character {c:?}, which is not allowed in a path"
        )));
    }
    Ok(path.to_string())
}

fn aws_path(path: &str) -> Result<String, RefError> {
    let example = Provider::Aws.example();
    if path.starts_with("arn:") {
        let parts: Vec<&str> = path.splitn(7, ':').collect();
        if parts.len() != 7
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
            || parts[6].is_empty()
        {
            return Err(RefError(format!(
                "`{path}` is not a Secrets Manager ARN; write arn:<partition>:secretsmanager:<region>:<account>:secret:<name>, or the secret's name, for example {example}"
            )));
        }
        return Ok(path.to_string());
    }
    if path.len() > 512 {
        return Err(RefError(format!(
            "the AWS secret name is {} characters long; Secrets Manager allows at most 512",
            path.len()
        )));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(RefError(format!(
            "the AWS secret name `{path}` contains {c:?}; names use letters, digits and /_+=.@- only, for example {example}"
        )));
    }
    Ok(path.to_string())
}

/// The region of a full AWS ARN (`arn:aws:<service>:<region>:...`), if it names one.
pub fn arn_region(path: &str) -> Option<&str> {
    path.strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|region| !region.is_empty())
}

/// SSM parameter names: letters, digits and `_.-/`, at most 1011 characters, a name
/// with `/` starts with one, at most 15 levels. A trailing `/` reads the whole path.
fn ssm_path(path: &str, versioned: bool) -> Result<String, RefError> {
    let example = Provider::Ssm.example();
    let name = if path.starts_with("arn:") {
        let parts: Vec<&str> = path.splitn(6, ':').collect();
        match parts.as_slice() {
            [_, _, "ssm", _, _, resource] if resource.starts_with("parameter/") => {
                let name = &resource["parameter".len()..];
                if name.len() < 2 || name.ends_with('/') {
                    return Err(RefError(format!(
                        "`{path}` names no parameter after `parameter/`; for example ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db/password"
                    )));
                }
                name.to_string()
            }
            _ => {
                return Err(RefError(format!(
                    "`{path}` is not an SSM parameter ARN; write the parameter's name, for example {example}, or its ARN, for example ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db/password"
                )));
            }
        }
    } else {
        path.to_string()
    };
    if name.len() > 1011 {
        return Err(RefError(format!(
            "the SSM parameter name is {} characters long; Parameter Store allows at most 1011, for example {example}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(RefError(format!(
            "the SSM parameter name `{name}` contains {c:?}; names use letters, digits and _.-/ only, for example {example}"
        )));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(RefError(format!(
            "the SSM parameter name `{name}` has `/` levels, so it starts with `/`; for example {example}"
        )));
    }
    let inner = name.trim_start_matches('/').trim_end_matches('/');
    if name.starts_with('/') && (inner.is_empty() || inner.split('/').any(str::is_empty)) {
        return Err(RefError(format!(
            "the SSM name `{name}` has an empty level; for example {example}, or ssm:/prod/app/ for every parameter under /prod/app"
        )));
    }
    if inner.split('/').count() > 15 {
        return Err(RefError(format!(
            "the SSM name `{name}` has more than 15 levels, the most Parameter Store allows; for example {example}"
        )));
    }
    if name.ends_with('/') && versioned {
        return Err(RefError(format!(
            "`{name}` reads every parameter under a path, so it takes no version or label; name one parameter to pick a version, for example ssm:/prod/db/password?version=3"
        )));
    }
    Ok(path.to_string())
}

/// Where an `ssm:` reference points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsmName<'a> {
    /// One parameter, by name or ARN.
    Parameter(&'a str),
    /// Every parameter under a path (written with a trailing `/`), as a map of names
    /// relative to it.
    Path(&'a str),
}

impl SecretRef {
    /// Where an `ssm:` reference points. Only meaningful for [`Provider::Ssm`].
    pub fn ssm_name(&self) -> SsmName<'_> {
        if self.path.ends_with('/') {
            SsmName::Path(&self.path)
        } else {
            SsmName::Parameter(&self.path)
        }
    }
}

/// A Google Secret Manager secret version: `projects/P/secrets/S[/versions/V]`, or
/// `S[/versions/V]` in the configured project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpSecret<'a> {
    /// `None` for the short form: the configured project (`gcp.project`).
    pub project: Option<&'a str>,
    pub secret: &'a str,
    /// `latest` when the path names none.
    pub version: &'a str,
}

impl GcpSecret<'_> {
    /// The version's resource name, in `project` when the reference names none.
    pub fn resource(&self, project: &str) -> String {
        format!(
            "projects/{}/secrets/{}/versions/{}",
            self.project.unwrap_or(project),
            self.secret,
            self.version
        )
    }
}

fn gcp_parts(path: &str) -> Option<GcpSecret<'_>> {
    let segments: Vec<&str> = path.split('/').collect();
    let (project, rest) = match segments.as_slice() {
        ["projects", project, "secrets", rest @ ..] => (Some(*project), rest),
        rest => (None, rest),
    };
    let (secret, version) = match rest {
        [secret] => (*secret, "latest"),
        [secret, "versions", version] => (*secret, *version),
        _ => return None,
    };
    Some(GcpSecret {
        project,
        secret,
        version,
    })
}

impl SecretRef {
    /// Where a `gcp:` reference points. Only meaningful for [`Provider::Gcp`], whose
    /// paths were checked when parsed.
    pub fn gcp_secret(&self) -> Option<GcpSecret<'_>> {
        gcp_parts(&self.path)
    }
}

fn gcp_path(path: &str) -> Result<String, RefError> {
    let forms = "write projects/<project>/secrets/<secret>[/versions/<version>], or <secret>[/versions/<version>] with gcp.project configured, for example gcp:projects/my-project/secrets/db-password/versions/3";
    let Some(parts) = gcp_parts(path) else {
        return Err(RefError(format!(
            "`{path}` is not a Secret Manager secret; {forms}"
        )));
    };
    if let Some(project) = parts.project {
        let id = crate::cloud::is_gcp_project(project);
        let number = !project.is_empty() && project.chars().all(|c| c.is_ascii_digit());
        if !id && !number {
            return Err(RefError(format!(
                "`{project}` is not a Google Cloud project ID (6-30 lowercase letters, digits and `-`, starting with a letter) or number; {forms}"
            )));
        }
    }
    let secret = parts.secret;
    if secret.is_empty()
        || secret.len() > 255
        || !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(RefError(format!(
            "`{secret}` is not a Secret Manager secret ID (1-255 letters, digits, `_` and `-`); {forms}"
        )));
    }
    let version = parts.version;
    let number = !version.is_empty()
        && !version.starts_with('0')
        && version.chars().all(|c| c.is_ascii_digit());
    let alias = version.len() <= 63
        && version.starts_with(|c: char| c.is_ascii_alphabetic())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !number && !alias {
        return Err(RefError(format!(
            "`{version}` is not a secret version: use `latest`, a version number or an alias, for example gcp:projects/my-project/secrets/db-password/versions/3"
        )));
    }
    Ok(path.to_string())
}

/// The Key Vault host suffixes of the Azure clouds: public, China, US Government.
/// (Azure Germany's `vault.microsoftazure.de` closed in 2021.)
pub const AZURE_VAULT_SUFFIXES: [&str; 3] = [
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
];

/// An Azure Key Vault secret: `<vault>/<secret>` in the public cloud, or
/// `https://<vault>.<suffix>/secrets/<secret>` in any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureSecret<'a> {
    pub vault: &'a str,
    /// One of [`AZURE_VAULT_SUFFIXES`].
    pub suffix: &'a str,
    pub name: &'a str,
}

impl AzureSecret<'_> {
    /// `https://<vault>.<suffix>`.
    pub fn vault_url(&self) -> String {
        format!("https://{}.{}", self.vault, self.suffix)
    }

    /// The OAuth scope of tokens for this cloud's Key Vault.
    pub fn scope(&self) -> String {
        format!("https://{}/.default", self.suffix)
    }
}

fn azure_parts(path: &str) -> Option<AzureSecret<'_>> {
    if let Some(rest) = path.strip_prefix("https://") {
        let (host, rest) = rest.split_once('/')?;
        let name = rest.strip_prefix("secrets/")?;
        let (vault, suffix) = host.split_once('.')?;
        let suffix = AZURE_VAULT_SUFFIXES.into_iter().find(|s| *s == suffix)?;
        return Some(AzureSecret {
            vault,
            suffix,
            name,
        });
    }
    let (vault, name) = path.split_once('/')?;
    Some(AzureSecret {
        vault,
        suffix: AZURE_VAULT_SUFFIXES[0],
        name,
    })
}

impl SecretRef {
    /// Where an `azure:` reference points. Only meaningful for [`Provider::Azure`],
    /// whose paths were checked when parsed.
    pub fn azure_secret(&self) -> Option<AzureSecret<'_>> {
        azure_parts(&self.path)
    }
}

fn is_azure_version(v: &str) -> bool {
    v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())
}

/// `<vault>/<secret>`, or a secret URL whose version (if any) becomes `?version=`. A
/// public-cloud URL becomes `<vault>/<secret>`.
fn azure_path(path: &str, version: Option<Version>) -> Result<(String, Option<Version>), RefError> {
    let forms = "write <vault-name>/<secret-name> or https://<vault-name>.vault.azure.net/secrets/<secret-name>, for example azure:my-vault/db-password";
    let (path, version) = match path.strip_prefix("https://") {
        Some(rest) => {
            let rest = rest.trim_end_matches('/');
            let host = rest.split('/').next().unwrap_or_default();
            if !AZURE_VAULT_SUFFIXES
                .iter()
                .any(|s| host.strip_suffix(s).is_some_and(|v| v.ends_with('.')))
            {
                return Err(RefError(format!(
                    "`{host}` is not a Key Vault host (<vault-name>.{}); {forms}",
                    AZURE_VAULT_SUFFIXES.join(" or <vault-name>.")
                )));
            }
            let segments: Vec<&str> = rest.split('/').collect();
            match segments.as_slice() {
                [_, "secrets", _] => (rest.to_string(), version),
                [host, "secrets", name, v] if version.is_none() && is_azure_version(v) => (
                    format!("{host}/secrets/{name}"),
                    Some(Version::Id(v.to_ascii_lowercase())),
                ),
                _ => {
                    return Err(RefError(format!(
                        "`{path}` is not a Key Vault secret URL (https://<vault>.vault.azure.net/secrets/<name>[/<32-hex version>]); {forms}"
                    )));
                }
            }
        }
        None => (path.to_string(), version),
    };
    let canonical = match path.split_once('/') {
        Some((host, rest)) if host.contains('.') => match host.strip_suffix(".vault.azure.net") {
            Some(vault) => format!("{vault}/{}", rest.trim_start_matches("secrets/")),
            None => format!("https://{path}"),
        },
        _ => path,
    };
    let Some(parts) = azure_parts(&canonical) else {
        return Err(RefError(format!(
            "`{canonical}` is not a Key Vault secret; {forms}"
        )));
    };
    let vault = parts.vault;
    let vault_ok = (3..=24).contains(&vault.len())
        && vault.starts_with(|c: char| c.is_ascii_alphabetic())
        && !vault.ends_with('-')
        && !vault.contains("--")
        && vault.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !vault_ok {
        return Err(RefError(format!(
            "`{vault}` is not a Key Vault name (3-24 letters, digits and single `-`, starting with a letter); {forms}"
        )));
    }
    let name = parts.name;
    if !(1..=127).contains(&name.len())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(RefError(format!(
            "`{name}` is not a Key Vault secret name (1-127 letters, digits and `-`); {forms}"
        )));
    }
    Ok((canonical, version))
}

fn parse_params(provider: Provider, params: &str) -> Result<Option<Version>, RefError> {
    let allowed: &[&str] = match provider {
        Provider::Vault | Provider::Azure => &["version"],
        Provider::Aws => &["version-stage", "version-id"],
        Provider::Ssm => &["version", "label"],
        Provider::Gcp => &[],
    };
    let example = match provider {
        Provider::Vault => "vault:secret/data/prod/db?version=3#password",
        Provider::Aws => "aws:prod/db?version-stage=AWSPREVIOUS#password",
        Provider::Ssm => "ssm:/prod/db/password?label=current",
        Provider::Gcp => "gcp:projects/my-project/secrets/db-password/versions/3",
        Provider::Azure => "azure:my-vault/db-password?version=0123456789abcdef0123456789abcdef",
    };
    if allowed.is_empty() {
        return Err(RefError(format!(
            "{provider} references take no `?` parameters; name the version in the path, for example {example}"
        )));
    }
    let mut version = None;
    for pair in params.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(RefError(format!(
                "the parameter `{pair}` has no value; write name=value, for example {example}"
            )));
        };
        if !allowed.contains(&name) {
            let hint = closest(name, allowed.iter().copied())
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(RefError(format!(
                "unknown parameter `{name}` for {provider}{hint}; {provider} takes {}, for example {example}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        if version.is_some() {
            return Err(RefError(format!(
                "more than one version parameter; give one of {}, for example {example}",
                allowed.join(", ")
            )));
        }
        version = Some(parse_version(provider, name, value, example)?);
    }
    Ok(version)
}

fn parse_version(
    provider: Provider,
    name: &str,
    value: &str,
    example: &str,
) -> Result<Version, RefError> {
    Ok(match (provider, name) {
        (Provider::Azure, _) => {
            if !is_azure_version(value) {
                return Err(RefError(format!(
                    "`version={value}` is not a Key Vault secret version (32 hexadecimal digits), for example {example}"
                )));
            }
            Version::Id(value.to_ascii_lowercase())
        }
        (_, "version") => match value.parse::<u64>() {
            Ok(n) if n > 0 => Version::Number(n),
            _ => {
                return Err(RefError(format!(
                    "`version={value}` is not a positive whole number; for example {example}"
                )));
            }
        },
        (_, "label") => {
            let valid = !value.is_empty()
                && value.len() <= 100
                && !value.starts_with(|c: char| c.is_ascii_digit())
                && !value.to_ascii_lowercase().starts_with("aws")
                && !value.to_ascii_lowercase().starts_with("ssm")
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                return Err(RefError(format!(
                    "`label={value}` is not a parameter label (letters, digits, `_-.`, at most 100, not starting with a digit, `aws` or `ssm`), for example {example}"
                )));
            }
            Version::Label(value.to_string())
        }
        (_, "version-stage") => {
            if value.is_empty()
                || value.len() > 256
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(RefError(format!(
                    "`version-stage={value}` is not a valid staging label (letters, digits, `_-.`, at most 256), for example {example}"
                )));
            }
            Version::Stage(value.to_string())
        }
        (_, "version-id") => {
            if value.len() < 32
                || value.len() > 64
                || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(RefError(format!(
                    "`version-id={value}` is not a Secrets Manager version id (32-64 letters, digits and `-`), for example aws:prod/db?version-id=EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"
                )));
            }
            Version::Id(value.to_string())
        }
        _ => unreachable!("checked against the allowed list"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn ok(s: &str) -> SecretRef {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        parse(s).expect_err(s).0
    }

    #[test]
    fn ssm_names_paths_arns_and_versions() {
        let r = ok("ssm:/prod/db/password#user");
        assert_eq!(r.ssm_name(), SsmName::Parameter("/prod/db/password"));
        assert_eq!(r.key.as_deref(), Some("user"));
        assert_eq!(
            ok("ssm:plain-name").ssm_name(),
            SsmName::Parameter("plain-name")
        );
        assert_eq!(ok("ssm:/prod/app/").ssm_name(), SsmName::Path("/prod/app/"));
        assert_eq!(ok("ssm:/p?version=3").version, Some(Version::Number(3)));
        let l = ok("ssm:/p?label=current");
        assert_eq!(l.version, Some(Version::Label("current".into())));
        assert_eq!(l.to_string(), "ssm:/p?label=current");
        let arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db";
        assert_eq!(ok(&format!("ssm:{arn}")).path, arn);
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        assert!(err("ssm:prod/db").contains("starts with `/`"));
        assert!(err("ssm:/prod//db").contains("empty level"));
        assert!(err("ssm:/prod/app/?version=2").contains("takes no version"));
        assert!(err("ssm:/p?label=1st").contains("not a parameter label"));
        assert!(err("ssm:/p?label=awsx").contains("not a parameter label"));
        assert!(err("ssm:/p q").contains("letters, digits"));
        assert!(err("ssm:arn:aws:s3:::b").contains("not an SSM parameter ARN"));
        assert!(err(&format!("ssm:/{}", "a/".repeat(16) + "b")).contains("15 levels"));
    }

    #[test]
    fn gcp_full_and_short_forms() {
        let r = ok("gcp:projects/my-project/secrets/db-password/versions/3#user");
        let s = r.gcp_secret().unwrap();
        assert_eq!(s.project, Some("my-project"));
        assert_eq!(
            s.resource("other"),
            "projects/my-project/secrets/db-password/versions/3"
        );
        let short = ok("gcp:db-password");
        let s = short.gcp_secret().unwrap();
        assert_eq!(s.project, None);
        assert_eq!(
            s.resource("p-123456"),
            "projects/p-123456/secrets/db-password/versions/latest"
        );
        assert_eq!(
            ok("gcp:projects/123456789/secrets/s")
                .gcp_secret()
                .unwrap()
                .project,
            Some("123456789")
        );
        ok("gcp:s/versions/prod-alias");
        assert!(err("gcp:projects/My_Project/secrets/s").contains("project ID"));
        assert!(err("gcp:projects/p-123456/secrets/a.b").contains("secret ID"));
        assert!(err("gcp:projects/p-123456/secrets/s/versions/0").contains("not a secret version"));
        assert!(err("gcp:projects/p-123456/s").contains("not a Secret Manager secret"));
        assert!(err("gcp:s?version=3").contains("take no `?` parameters"));
    }

    #[test]
    fn azure_names_urls_and_versions() {
        let r = ok("azure:my-vault/db-password#user");
        let s = r.azure_secret().unwrap();
        assert_eq!((s.vault, s.name), ("my-vault", "db-password"));
        assert_eq!(s.vault_url(), "https://my-vault.vault.azure.net");
        assert_eq!(s.scope(), "https://vault.azure.net/.default");
        let v = "0123456789abcdef0123456789ABCDEF";
        let url = ok(&format!(
            "azure:https://my-vault.vault.azure.net/secrets/db-password/{v}"
        ));
        assert_eq!(url.path, "my-vault/db-password");
        assert_eq!(url.version, Some(Version::Id(v.to_ascii_lowercase())));
        assert_eq!(
            url.to_string(),
            "azure:my-vault/db-password?version=0123456789abcdef0123456789abcdef"
        );
        assert_eq!(ok(&url.to_string()), url);
        let cn = ok("azure:https://kv-cn.vault.azure.cn/secrets/app");
        assert_eq!(cn.path, "https://kv-cn.vault.azure.cn/secrets/app");
        let s = cn.azure_secret().unwrap();
        assert_eq!(s.vault_url(), "https://kv-cn.vault.azure.cn");
        assert_eq!(s.scope(), "https://vault.azure.cn/.default");
        assert!(err("azure:https://evil.example.com/secrets/x").contains("not a Key Vault host"));
        assert!(
            err("azure:https://v1x.vault.azure.net/keys/x").contains("not a Key Vault secret URL")
        );
        assert!(err("azure:ab/x").contains("not a Key Vault name"));
        assert!(err("azure:my--vault/x").contains("not a Key Vault name"));
        assert!(err("azure:my-vault/db_password").contains("not a Key Vault secret name"));
        assert!(err("azure:my-vault").contains("not a Key Vault secret"));
        assert!(err("azure:my-vault/x?version=3").contains("32 hexadecimal"));
    }
}
