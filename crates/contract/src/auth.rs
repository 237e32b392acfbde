//! How the injected containers log in to Vault: chosen by the webhook (config or
//! `secret-injector.io/vault-auth-method`), read back by `init` from its env.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The Vault auth method the pod's projected token is presented to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `auth/<path>/login` of a Kubernetes auth mount (Vault calls TokenReview).
    #[default]
    Kubernetes,
    /// `auth/<path>/login` of a JWT/OIDC auth mount (Vault checks the signature itself).
    Jwt,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 2] = [AuthMethod::Kubernetes, AuthMethod::Jwt];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Kubernetes => "kubernetes",
            AuthMethod::Jwt => "jwt",
        }
    }

    /// The method named exactly `s`.
    pub fn parse(s: &str) -> Option<AuthMethod> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The names the webhook writes are the names serde, clap and `parse` read.
    #[test]
    fn one_name_per_method_everywhere() {
        for m in AuthMethod::ALL {
            let name = m.as_str();
            assert_eq!(AuthMethod::parse(name), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<AuthMethod>(name.into()).unwrap(),
                m
            );
            assert_eq!(AuthMethod::from_str(name, false), Ok(m));
        }
        assert_eq!(AuthMethod::value_variants(), &AuthMethod::ALL);
        assert_eq!(AuthMethod::parse("ldap"), None);
    }
}
