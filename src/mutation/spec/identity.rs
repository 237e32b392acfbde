//! How the injected containers authenticate: the Vault and AWS identities.

use super::*;
use crate::contract::auth::AuthMethod;

pub(super) fn vault_identity(
    c: &mut Collector,
    pod: &PodView,
    config: &Config,
    ours: &BTreeMap<&str, &str>,
) -> VaultIdentity {
    let role = match ours.get("vault-role") {
        Some(r) if is_name(r, "-_.@") => r.to_string(),
        Some(r) => {
            c.push(
                "vault-role",
                format!(
                    "`{r}` is not a Vault role name (letters, digits, `-_.@`); for example secret-injector.io/vault-role: app"
                ),
            );
            String::new()
        }
        None => pod.service_account().to_string(),
    };
    let auth_path = match ours.get("vault-auth-path") {
        Some(p)
            if is_name(p, "-_./")
                && !p.starts_with('/')
                && !p.ends_with('/')
                && !p.split('/').any(|s| s.is_empty() || s == "..") =>
        {
            p.to_string()
        }
        Some(p) => {
            c.push(
                "vault-auth-path",
                format!(
                    "`{p}` is not an auth mount path (no leading `auth/` or `/`); for example secret-injector.io/vault-auth-path: kubernetes-prod"
                ),
            );
            String::new()
        }
        None => config.vault.auth_path.clone(),
    };
    let auth_method = match ours.get("vault-auth-method").copied() {
        Some(m) => AuthMethod::parse(m).unwrap_or_else(|| {
            c.push(
                "vault-auth-method",
                format!(
                    "`{m}` is not supported; use `kubernetes` or `jwt`, for example secret-injector.io/vault-auth-method: jwt"
                ),
            );
            AuthMethod::default()
        }),
        None => config.vault.auth_method,
    };
    let address = match ours.get("vault-addr") {
        Some(addr) => {
            let want = addr.trim_end_matches('/');
            if config
                .vault
                .allowed_addresses
                .iter()
                .any(|a| a.trim_end_matches('/') == want)
            {
                want.to_string()
            } else {
                let allowed = if config.vault.allowed_addresses.is_empty() {
                    "the allow-list is empty".to_string()
                } else {
                    format!("allowed: {}", config.vault.allowed_addresses.join(", "))
                };
                c.push(
                    "vault-addr",
                    format!(
                        "`{addr}` is not in the webhook's vault.allowed_addresses ({allowed}); a pod cannot send its token to an address of its choosing. Remove the annotation to use {}, or ask the platform team to allow the address",
                        config.vault.address
                    ),
                );
                String::new()
            }
        }
        None => config.vault.address.clone(),
    };
    VaultIdentity {
        address,
        role,
        auth_path,
        auth_method,
    }
}

pub(super) fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|ch| ch.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| is_name(r, "+=,.@_-/"))
}

pub(super) fn aws_identity(
    c: &mut Collector,
    config: &Config,
    ctx: &Context,
    ours: &BTreeMap<&str, &str>,
) -> AwsIdentity {
    let region = match ours.get("aws-region") {
        Some(r) => {
            let parts: Vec<&str> = r.split('-').collect();
            let valid = parts.len() >= 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                })
                && parts
                    .last()
                    .is_some_and(|p| p.chars().all(|ch| ch.is_ascii_digit()));
            if !valid {
                c.push(
                    "aws-region",
                    format!("`{r}` is not an AWS region; for example secret-injector.io/aws-region: eu-west-1"),
                );
            }
            r.to_string()
        }
        None => config.aws.region.clone(),
    };
    let role_arn = match ours.get("aws-role-arn") {
        Some(arn) if valid_role_arn(arn) => Some(arn.to_string()),
        Some(arn) => {
            c.push(
                "aws-role-arn",
                format!(
                    "`{arn}` is not an IAM role ARN; for example secret-injector.io/aws-role-arn: arn:aws:iam::123456789012:role/app-secrets"
                ),
            );
            None
        }
        None => ctx.service_account_role_arn.clone(),
    };
    AwsIdentity {
        region,
        region_explicit: ours.contains_key("aws-region"),
        explicit: ours.contains_key("aws-role-arn"),
        role_arn,
    }
}
