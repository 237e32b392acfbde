//! The `vault` section of the configuration, and its allow-list of the addresses a pod
//! may pick with `secret-injector.io/vault-addr`, each with the audience of the pod's
//! projected token.
//!
//! Why an audience per address: a Vault that receives a pod's token can replay it at
//! every other Vault that accepts the same audience. With one audience for every
//! address, whoever runs (or has broken into) one Vault on the allow-list can log in
//! to the others as the pod. An address with its own audience gets tokens only it
//! accepts, provided each Vault's roles bind only their own audience.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use contract::auth::AuthMethod;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    pub address: String,
    /// Path of a PEM CA bundle, read by the webhook and handed to the init container.
    #[serde(deserialize_with = "super::optional")]
    pub ca_cert: Option<String>,
    pub namespace: String,
    pub auth_method: AuthMethod,
    pub auth_path: String,
    /// Audience of the projected token for `address`, and for the allow-listed
    /// addresses that do not name their own.
    pub audience: String,
    /// Addresses a pod may pick with `secret-injector.io/vault-addr`.
    pub allowed_addresses: Vec<AllowedAddress>,
    /// The PEM read from `ca_cert` when the config is loaded.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            address: "https://vault.vault.svc:8200".to_string(),
            ca_cert: None,
            namespace: String::new(),
            auth_method: AuthMethod::default(),
            auth_path: "kubernetes".to_string(),
            audience: "vault".to_string(),
            allowed_addresses: Vec::new(),
            ca_pem: None,
        }
    }
}

/// One entry of `vault.allowed_addresses`. In the file, either the address alone
/// (`https://vault-eu.example:8200`: the token's audience is `vault.audience`) or
/// `{address: https://vault-eu.example:8200, audience: vault-eu}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedAddress {
    pub address: String,
    /// The projected token's audience for a pod that talks to `address`; `None`:
    /// `vault.audience`.
    pub audience: Option<String>,
}

impl AllowedAddress {
    /// An entry without an audience of its own.
    pub fn new(address: impl Into<String>) -> Self {
        AllowedAddress {
            address: address.into(),
            audience: None,
        }
    }

    /// An entry with its own audience.
    pub fn with_audience(address: impl Into<String>, audience: impl Into<String>) -> Self {
        AllowedAddress {
            address: address.into(),
            audience: Some(audience.into()),
        }
    }
}

impl From<&str> for AllowedAddress {
    fn from(address: &str) -> Self {
        AllowedAddress::new(address)
    }
}

/// The keys of an entry written as a map.
const ENTRY_KEYS: [&str; 2] = ["address", "audience"];

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Address(String),
    Entry(Entry),
}

impl Serialize for AllowedAddress {
    /// The address alone when it has no audience of its own, as it was written.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.audience {
            None => s.serialize_str(&self.address),
            Some(audience) => Entry {
                address: self.address.clone(),
                audience: Some(audience.clone()),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AllowedAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Written::deserialize(d)? {
            Written::Address(address) => AllowedAddress::new(address),
            Written::Entry(Entry { address, audience }) => AllowedAddress { address, audience },
        })
    }
}

/// Addresses are compared without a trailing `/`, as the annotation is.
fn same_address(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl VaultConfig {
    /// The allow-list entry of `address` (compared without a trailing `/`).
    pub fn allowed(&self, address: &str) -> Option<&AllowedAddress> {
        self.allowed_addresses
            .iter()
            .find(|a| same_address(&a.address, address))
    }

    /// The audience of the projected token for a pod that talks to `entry`.
    pub fn audience_of<'a>(&'a self, entry: &'a AllowedAddress) -> &'a str {
        entry.audience.as_deref().unwrap_or(&self.audience)
    }

    /// What the allow-list cannot mean: an empty audience, an address listed twice with
    /// two audiences (which would a pod get?), or `vault.address` with an audience
    /// other than `vault.audience` (a pod would get one or the other depending on
    /// whether it names the address).
    pub(super) fn allow_list_problems(&self) -> Vec<String> {
        // Entries are named by their address: the ones of a bad form are already
        // dropped, so a place in the list could name another line of the file.
        let mut problems = Vec::new();
        for (i, entry) in self.allowed_addresses.iter().enumerate() {
            let at = format!("vault.allowed_addresses entry `{}`", entry.address);
            if let Some(audience) = &entry.audience {
                if audience.trim().is_empty() {
                    problems.push(format!(
                        "{at}: audience must not be empty (leave it out to use vault.audience `{}`)",
                        self.audience
                    ));
                } else if same_address(&entry.address, &self.address) && *audience != self.audience
                {
                    problems.push(format!(
                        "{at} is vault.address, whose tokens have vault.audience `{}`, but the entry says audience `{audience}`; set vault.audience, or leave the entry's audience out",
                        self.audience
                    ));
                }
            }
            let earlier = &self.allowed_addresses[..i];
            // Listed twice with the same audience is harmless (and loaded before
            // audiences existed); with two audiences it cannot be meant.
            if let Some(first) = earlier.iter().find(|a| {
                same_address(&a.address, &entry.address)
                    && self.audience_of(a) != self.audience_of(entry)
            }) {
                problems.push(format!(
                    "vault.allowed_addresses lists `{}` twice with different audiences (as `{}` with `{}` and `{}` with `{}`, compared without a trailing `/`); list each address once, with its audience",
                    entry.address.trim_end_matches('/'),
                    first.address,
                    self.audience_of(first),
                    entry.address,
                    self.audience_of(entry),
                ));
            }
        }
        problems
    }
}

/// The written form of every `vault.allowed_addresses` entry, checked before serde
/// reads the config, so that a bad entry is one problem among the others (and is
/// dropped, so the rest is still checked).
pub(super) fn check_allowed_shapes(value: &mut Value) -> Vec<String> {
    const FORMS: &str = "an entry is an address (https://vault-eu.example:8200) or {address: https://vault-eu.example:8200, audience: vault-eu}";
    let Some(list) = value.pointer_mut("/vault/allowed_addresses") else {
        return Vec::new();
    };
    let Value::Array(entries) = list else {
        let problem = format!("vault.allowed_addresses must be a list; {FORMS}");
        *list = Value::Array(Vec::new());
        return vec![problem];
    };
    let mut problems = Vec::new();
    let mut i = 0;
    entries.retain(|entry| {
        let at = format!("vault.allowed_addresses[{i}]");
        i += 1;
        let problem = entry_problem(entry);
        if let Some(p) = &problem {
            problems.push(format!("{at}: {p}; {FORMS}"));
        }
        problem.is_none()
    });
    problems
}

/// What is wrong with the written form of one entry.
fn entry_problem(entry: &Value) -> Option<String> {
    let map = match entry {
        Value::String(_) => return None,
        Value::Object(map) => map,
        other => return Some(format!("`{other}` is neither an address nor a map")),
    };
    if let Some(key) = map.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
        let hint = contract::reference::closest(key, ENTRY_KEYS)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Some(format!("`{key}` is not a key of an entry{hint}"));
    }
    match map.get("address") {
        Some(Value::String(_)) => {}
        Some(other) => return Some(format!("address `{other}` is not a string")),
        None => return Some("the entry has no address".to_string()),
    }
    match map.get("audience") {
        None | Some(Value::String(_)) => None,
        // `audience:` with nothing after it.
        Some(Value::Null) => {
            Some("audience is empty (leave the key out to use vault.audience)".to_string())
        }
        Some(other) => Some(format!("audience `{other}` is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, super::super::ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_yaml_and_env(yaml, env)
    }

    fn problems(yaml: &str) -> String {
        load(yaml, &[]).unwrap_err().to_string()
    }

    const TWO_VAULTS: &str = "vault:
  address: https://vault.vault.svc:8200
  audience: vault
  allowed_addresses:
    - https://vault-legacy.example:8200
    - {address: https://vault-eu.example:8200/, audience: vault-eu}
    - address: https://vault-us.example:8200
      audience: vault-us
";

    /// Both forms, mixed: an address alone keeps `vault.audience` (as before), an
    /// entry with an audience has its own.
    #[test]
    fn entries_are_an_address_or_an_address_with_its_audience() {
        let c = load(TWO_VAULTS, &[]).unwrap();
        let v = &c.vault;
        assert_eq!(
            v.allowed_addresses,
            [
                AllowedAddress::new("https://vault-legacy.example:8200"),
                AllowedAddress::with_audience("https://vault-eu.example:8200/", "vault-eu"),
                AllowedAddress::with_audience("https://vault-us.example:8200", "vault-us"),
            ]
        );
        let audience = |addr: &str| v.allowed(addr).map(|e| v.audience_of(e));
        assert_eq!(audience("https://vault-eu.example:8200"), Some("vault-eu"));
        assert_eq!(audience("https://vault-us.example:8200/"), Some("vault-us"));
        assert_eq!(audience("https://vault-legacy.example:8200"), Some("vault"));
        assert_eq!(audience("https://vault.vault.svc:8200"), None);
        assert_eq!(audience("https://vault-eu.example:8201"), None);
        // The entries serialize back as they were written, and read back the same.
        let back = serde_json::to_value(&v.allowed_addresses).unwrap();
        assert_eq!(back[0], "https://vault-legacy.example:8200");
        assert_eq!(
            back[1],
            serde_json::json!({"address": "https://vault-eu.example:8200/", "audience": "vault-eu"})
        );
        let again: Vec<AllowedAddress> = serde_json::from_value(back).unwrap();
        assert_eq!(again, v.allowed_addresses);
    }

    /// The environment takes the same entries as a JSON list; the comma form stays
    /// addresses alone.
    #[test]
    fn the_environment_takes_entries_as_json() {
        let name = "SECRET_INJECTOR_VAULT_ALLOWED_ADDRESSES";
        let c = load(
            "",
            &[(
                name,
                r#"[{"address": "https://a:8200", "audience": "a"}, "https://b:8200"]"#,
            )],
        )
        .unwrap();
        assert_eq!(
            c.vault.allowed_addresses,
            [
                AllowedAddress::with_audience("https://a:8200", "a"),
                AllowedAddress::new("https://b:8200"),
            ]
        );
        let c = load(TWO_VAULTS, &[(name, "https://x:8200, https://y:8200")]).unwrap();
        assert_eq!(
            c.vault.allowed_addresses,
            [
                AllowedAddress::new("https://x:8200"),
                AllowedAddress::new("https://y:8200")
            ]
        );
        let e = load(
            "",
            &[(name, r#"[{"address": "https://a:8200", "audience": ""}]"#)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("audience must not be empty"), "{e}");
    }

    /// Every problem of the allow-list is named, with the others of the file.
    #[test]
    fn bad_entries_are_named_at_load_with_the_other_problems() {
        let e = problems(
            "mount_path: rel
vault:
  allowed_addresses:
    - {address: https://a:8200, audience: ''}
    - {address: https://b:8200, audience: '  '}
    - address: https://c:8200
      audience:
    - {address: https://d:8200, audiance: d}
    - {audience: e}
    - {address: 8200, audience: f}
    - {address: https://g:8200, audience: [g]}
    - 42
    - https://h:8200
    - {address: https://h:8200/, audience: h}
    - {address: not-a-url, audience: x}
",
        );
        for want in [
            "mount_path `rel` must be an absolute path",
            "vault.allowed_addresses entry `https://a:8200`: audience must not be empty (leave it out to use vault.audience `vault`)",
            "vault.allowed_addresses entry `https://b:8200`: audience must not be empty",
            "vault.allowed_addresses[2]: audience is empty (leave the key out to use vault.audience)",
            "vault.allowed_addresses[3]: `audiance` is not a key of an entry (did you mean `audience`?); an entry is an address (https://vault-eu.example:8200) or {address: https://vault-eu.example:8200, audience: vault-eu}",
            "vault.allowed_addresses[4]: the entry has no address",
            "vault.allowed_addresses[5]: address `8200` is not a string",
            "vault.allowed_addresses[6]: audience `[\"g\"]` is not a string",
            "vault.allowed_addresses[7]: `42` is neither an address nor a map",
            "vault.allowed_addresses `not-a-url` is not a URL",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        assert!(
            e.contains("vault.allowed_addresses lists `https://h:8200` twice with different audiences (as `https://h:8200` with `vault` and `https://h:8200/` with `h`, compared without a trailing `/`); list each address once, with its audience"),
            "{e}"
        );
        let e = problems("vault:\n  allowed_addresses: https://a:8200\n");
        assert!(
            e.contains("vault.allowed_addresses must be a list; an entry is"),
            "{e}"
        );
    }

    /// One address, one audience: listed twice, or `vault.address` with an audience
    /// other than `vault.audience`, is refused; `vault.address` listed with the same
    /// audience (or none) is not.
    #[test]
    fn an_address_has_one_audience() {
        let e = problems(
            "vault:\n  allowed_addresses: [https://a:8200, {address: https://a:8200, audience: a}]\n",
        );
        assert!(
            e.contains("vault.allowed_addresses lists `https://a:8200` twice"),
            "{e}"
        );
        let e = problems(
            "vault:\n  address: https://main:8200\n  allowed_addresses: [{address: https://main:8200/, audience: other}]\n",
        );
        assert!(
            e.contains("vault.allowed_addresses entry `https://main:8200/` is vault.address, whose tokens have vault.audience `vault`, but the entry says audience `other`"),
            "{e}"
        );
        let c = load(
            "vault:\n  address: https://main:8200\n  audience: main\n  allowed_addresses: [https://main:8200, {address: https://eu:8200, audience: main}]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.vault.allowed_addresses.len(), 2);
        load(
            "vault:\n  address: https://main:8200\n  audience: main\n  allowed_addresses: [{address: https://main:8200, audience: main}]\n",
            &[],
        )
        .unwrap();
        // Twice with the same audience: harmless, and loaded before audiences existed.
        load(
            "vault:\n  allowed_addresses: [https://a:8200, https://a:8200/, {address: https://b:8200, audience: b}, {address: https://b:8200, audience: b}]\n",
            &[],
        )
        .unwrap();
    }
}
