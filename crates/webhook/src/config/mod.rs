//! The webhook's configuration (SPEC section 8): a YAML file, every key also settable
//! as `SECRET_INJECTOR_<SECTION>_<KEY>` in the environment (env wins over the file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use contract::auth::AuthMethod;

mod clouds;
mod vault;
pub use clouds::{AzureConfig, GcpConfig};
pub use contract::plan::EnvDelivery;
pub use vault::{AllowedAddress, VaultConfig};

pub const ENV_PREFIX: &str = "SECRET_INJECTOR_";

/// Everything wrong with a config, reported together, and the file it is in.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file every problem is in; `None` for the env alone, or when a problem names
    /// its own file.
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> ConfigError {
        ConfigError {
            file: None,
            problems: vec![problem],
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Image of the injected containers (the webhook's own image holds their agent).
    pub image: String,
    pub image_pull_policy: PullPolicy,
    /// Default mount path of the secrets volume in app containers.
    pub mount_path: String,
    /// Lifetime of the projected service-account tokens (Kubernetes minimum: 600).
    pub token_expiration_seconds: i64,
    /// Log level of the injected containers (`RUST_LOG` syntax).
    pub init_log_level: String,
    /// How `env-<VAR>` values reach the app's environment.
    pub env_delivery: EnvDelivery,
    pub vault: VaultConfig,
    pub aws: AwsConfig,
    pub gcp: GcpConfig,
    pub azure: AzureConfig,
    pub resources: Resources,
}

/// `imagePullPolicy` of the injected containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    pub audience: String,
    /// Optional endpoint override for every AWS service, STS included
    /// (`AWS_ENDPOINT_URL`), for emulators and tests.
    #[serde(deserialize_with = "optional")]
    pub endpoint_url: Option<String>,
    /// Optional endpoint of Secrets Manager only (`AWS_ENDPOINT_URL_SECRETS_MANAGER`),
    /// for a VPC interface endpoint.
    #[serde(deserialize_with = "optional")]
    pub secretsmanager_endpoint_url: Option<String>,
    /// Optional endpoint of Parameter Store only (`AWS_ENDPOINT_URL_SSM`).
    #[serde(deserialize_with = "optional")]
    pub ssm_endpoint_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            image: concat!(
                "ghcr.io/secret-injector/secret-injector:",
                env!("CARGO_PKG_VERSION")
            )
            .to_string(),
            image_pull_policy: PullPolicy::default(),
            mount_path: "/secrets".to_string(),
            token_expiration_seconds: 600,
            init_log_level: "info".to_string(),
            env_delivery: EnvDelivery::default(),
            vault: VaultConfig::default(),
            aws: AwsConfig::default(),
            gcp: GcpConfig::default(),
            azure: AzureConfig::default(),
            resources: Resources::default(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: "us-east-1".to_string(),
            audience: "sts.amazonaws.com".to_string(),
            endpoint_url: None,
            secretsmanager_endpoint_url: None,
            ssm_endpoint_url: None,
        }
    }
}

impl Default for Resources {
    fn default() -> Self {
        let map = |cpu: &str, mem: &str| {
            BTreeMap::from([
                ("cpu".to_string(), cpu.to_string()),
                ("memory".to_string(), mem.to_string()),
            ])
        };
        Resources {
            requests: map("10m", "16Mi"),
            limits: map("200m", "64Mi"),
        }
    }
}

impl Config {
    /// Load the file (if any), then apply `SECRET_INJECTOR_*` overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::one(format!("cannot read config file {}: {e}", path.display()))
            })?,
            None => String::new(),
        };
        // Every problem of a file names the file.
        let mut config = Self::from_yaml_and_env(&text, env).map_err(|e| ConfigError {
            file: file.map(Path::to_path_buf),
            ..e
        })?;
        if let Some(path) = &config.vault.ca_cert {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::one(format!("cannot read vault.ca_cert {path}: {e}")))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::one(format!(
                    "vault.ca_cert {path} holds no PEM certificate"
                )));
            }
            config.vault.ca_pem = Some(pem);
        }
        Ok(config)
    }

    /// Pure part of [`Config::load`].
    pub fn from_yaml_and_env(
        yaml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut value = serde_json::to_value(Config::default()).expect("config serializes");
        let mut unknown = Vec::new();
        if !yaml.trim().is_empty() {
            let mut file: Value = serde_yaml_ng::from_str(yaml)
                .map_err(|e| ConfigError::one(format!("config file is not valid YAML: {e}")))?;
            if !file.is_null() {
                // Reported with every other problem; dropped so the rest is still read.
                unknown_keys(&mut file, &value, "", &mut unknown);
                merge(&mut value, file);
            }
        }
        // `cpu: 1` is as valid in YAML as in a pod spec: numbers become quantities
        // (before the env overrides, which keep the type they replace).
        for kind in ["requests", "limits"] {
            if let Some(Value::Object(map)) = value.pointer_mut(&format!("/resources/{kind}")) {
                for v in map.values_mut() {
                    if let Value::Number(n) = v {
                        *v = Value::String(n.to_string());
                    }
                }
            }
        }
        let leaves = leaf_env_names(&value);
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some(path) = leaves.get(rest) else {
                continue;
            };
            let slot = value.pointer_mut(path).expect("leaf path exists");
            *slot = env_value(slot, &raw).map_err(|e| ConfigError::one(format!("{name}: {e}")))?;
        }
        // The enums are checked here, so a bad value is one problem among all the others
        // rather than the only error serde reports.
        let choices = Choices {
            unknown,
            auth_method: check_choice::<AuthMethod>(&mut value, "/vault/auth_method", |v| {
                format!("vault.auth_method `{v}` must be `kubernetes` or `jwt`")
            }),
            pull_policy: check_choice::<PullPolicy>(&mut value, "/image_pull_policy", |v| {
                format!("image_pull_policy `{v}` must be Always, IfNotPresent or Never")
            }),
            env_delivery: check_choice::<EnvDelivery>(&mut value, "/env_delivery", |v| {
                format!("env_delivery `{v}` must be `exec` or `file-key-ref` (Kubernetes 1.35+)")
            }),
            allowed_addresses: vault::check_allowed_shapes(&mut value),
        };
        let config: Config = serde_json::from_value(value)
            .map_err(|e| ConfigError::one(format!("invalid config: {e}")))?;
        config.validate(choices)?;
        Ok(config)
    }

    fn validate(&self, choices: Choices) -> Result<()> {
        let mut problems = choices.unknown;
        if self.image.trim().is_empty() {
            problems.push("image must not be empty".to_string());
        }
        if !self.mount_path.starts_with('/') {
            problems.push(format!(
                "mount_path `{}` must be an absolute path",
                self.mount_path
            ));
        }
        if !(600..=86400).contains(&self.token_expiration_seconds) {
            problems.push(format!(
                "token_expiration_seconds {} must be between 600 and 86400 (Kubernetes' limits)",
                self.token_expiration_seconds
            ));
        }
        problems.extend(choices.auth_method);
        for (what, v) in [
            ("vault.audience", &self.vault.audience),
            ("aws.audience", &self.aws.audience),
            ("vault.auth_path", &self.vault.auth_path),
        ] {
            if v.trim().is_empty() {
                problems.push(format!("{what} must not be empty"));
            }
        }
        problems.extend(choices.pull_policy);
        problems.extend(choices.env_delivery);
        for e in self.endpoints() {
            let checked = match e.placeholder {
                Some(p) => check_url(&e.url.replace(p, "vault")),
                None => check_url(e.url),
            };
            if let Err(problem) = checked {
                let (key, url, example) = (e.key, e.url, e.example);
                problems.push(format!("{key} `{url}` {problem}; for example {example}"));
            }
        }
        problems.extend(choices.allowed_addresses);
        problems.extend(self.vault.allow_list_problems());
        problems.extend(self.cloud_problems());
        problems.extend(self.resources.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: None,
                problems,
            })
        }
    }

    /// Every URL of the config, with how it is checked.
    fn endpoints<'a>(&'a self) -> Vec<Endpoint<'a>> {
        const VAULT: &str = "https://vault.vault.svc:8200";
        const AWS: &str = "https://secretsmanager.eu-central-1.amazonaws.com";
        const GCP: &str = contract::cloud::GCP_SECRET_MANAGER;
        const AZURE: &str = contract::cloud::AZURE_AUTHORITY;
        let url = |key, url: &'a str, example| Endpoint {
            key,
            url,
            placeholder: None,
            example,
        };
        let (vault, aws, gcp, azure) = (&self.vault, &self.aws, &self.gcp, &self.azure);
        let mut all = vec![url("vault.address", &vault.address, VAULT)];
        all.extend(
            (vault.allowed_addresses.iter())
                .map(|a| url("vault.allowed_addresses", &a.address, VAULT)),
        );
        all.extend([
            url(
                "gcp.secret_manager_endpoint",
                &gcp.secret_manager_endpoint,
                GCP,
            ),
            url("gcp.sts_endpoint", &gcp.sts_endpoint, GCP),
            url(
                "gcp.iam_credentials_endpoint",
                &gcp.iam_credentials_endpoint,
                GCP,
            ),
            url("gcp.metadata_endpoint", &gcp.metadata_endpoint, GCP),
            url("azure.authority_host", &azure.authority_host, AZURE),
        ]);
        // The optional ones, when set.
        let optional = [
            ("aws.endpoint_url", &aws.endpoint_url, AWS),
            (
                "aws.secretsmanager_endpoint_url",
                &aws.secretsmanager_endpoint_url,
                AWS,
            ),
            ("aws.ssm_endpoint_url", &aws.ssm_endpoint_url, AWS),
        ];
        all.extend(
            (optional.into_iter())
                .filter_map(|(key, u, example)| Some(url(key, u.as_deref()?, example))),
        );
        if let Some(endpoint) = &azure.key_vault_endpoint {
            all.push(Endpoint {
                placeholder: Some("{vault}"),
                ..url("azure.key_vault_endpoint", endpoint, AZURE)
            });
        }
        all
    }
}

/// An optional setting of the file or the env: absent, `null` and `""` all mean "not
/// set" (`None`), so that no code downstream tells an empty string from a missing one.
fn optional<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A URL of the config and how it is checked.
struct Endpoint<'a> {
    key: &'static str,
    /// Set: an optional one that is not set is not listed; an empty required one is a
    /// mistake.
    url: &'a str,
    /// A placeholder the URL may hold, checked as if it were a name.
    placeholder: Option<&'static str>,
    example: &'static str,
}

impl AwsConfig {
    /// The endpoint overrides that are set, each with the SDK variable that carries it
    /// into the pod.
    pub fn endpoint_env(&self) -> impl Iterator<Item = (&'static str, &str)> {
        use contract::names::{
            AWS_ENDPOINT_URL_ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER_ENV, AWS_ENDPOINT_URL_SSM_ENV,
        };
        [
            (AWS_ENDPOINT_URL_ENV, &self.endpoint_url),
            (
                AWS_ENDPOINT_URL_SECRETS_MANAGER_ENV,
                &self.secretsmanager_endpoint_url,
            ),
            (AWS_ENDPOINT_URL_SSM_ENV, &self.ssm_endpoint_url),
        ]
        .into_iter()
        .filter_map(|(env, url)| Some((env, url.as_deref()?)))
    }
}

/// Keys of the file that the config does not have, each with the closest known key of
/// its section, as annotations get: `vault.adress is not a config key (did you mean
/// vault.address?)`. The resource maps take any resource name (checked later).
fn unknown_keys(file: &mut Value, defaults: &Value, path: &str, out: &mut Vec<String>) {
    let (Value::Object(file), Value::Object(known)) = (file, defaults) else {
        return;
    };
    if matches!(path, "resources.requests" | "resources.limits") {
        return;
    }
    let mut dropped = Vec::new();
    for (key, value) in file.iter_mut() {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match known.get(key) {
            Some(default) => unknown_keys(value, default, &full, out),
            None => {
                let hint = contract::reference::closest(key, known.keys().map(String::as_str))
                    .map(|k| {
                        let k = if path.is_empty() {
                            k.to_string()
                        } else {
                            format!("{path}.{k}")
                        };
                        format!(" (did you mean `{k}`?)")
                    })
                    .unwrap_or_default();
                let keys: Vec<&str> = known.keys().map(String::as_str).collect();
                out.push(format!(
                    "`{full}` is not a config key{hint}; the keys {} are: {}",
                    if path.is_empty() {
                        "at the top".to_string()
                    } else {
                        format!("of {path}")
                    },
                    keys.join(", ")
                ));
                dropped.push(key.clone());
            }
        }
    }
    for key in dropped {
        file.remove(&key);
    }
}

/// The problems of the enum-valued keys, reported in their place among the others.
struct Choices {
    /// Keys the config does not have (see [`unknown_keys`]).
    unknown: Vec<String>,
    auth_method: Option<String>,
    pull_policy: Option<String>,
    env_delivery: Option<String>,
    /// Entries of `vault.allowed_addresses` that are neither an address nor
    /// `{address, audience}`.
    allowed_addresses: Vec<String>,
}

/// A value at `pointer` that is not one of `T`'s names: a problem, and `T`'s default in
/// its place so the rest of the config is still checked.
fn check_choice<T: serde::de::DeserializeOwned + Serialize + Default>(
    value: &mut Value,
    pointer: &str,
    problem: impl FnOnce(&str) -> String,
) -> Option<String> {
    let slot = value.pointer_mut(pointer)?;
    if serde_json::from_value::<T>(slot.clone()).is_ok() {
        return None;
    }
    let shown = match &*slot {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    *slot = serde_json::to_value(T::default()).expect("a default serializes");
    Some(problem(&shown))
}

/// An `http(s)://host[:port]` address.
fn check_url(url: &str) -> std::result::Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Err("must start with https:// or http://".to_string())
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("has no host".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("is not a URL ({e})")),
    }
}

/// Kubernetes' quantity syntax: `^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$`
/// (kube_quantity, which does the arithmetic, is more lenient: it takes `Mi` alone as 0).
fn is_quantity(raw: &str) -> bool {
    let s = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let int = digits(s);
    let mut rest = &s[int..];
    let mut frac = 0;
    if let Some(r) = rest.strip_prefix('.') {
        frac = digits(r);
        rest = &r[frac..];
    }
    if int == 0 && frac == 0 {
        return false;
    }
    match rest {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exp => exp
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && digits(e) == e.len()),
    }
}

/// Resource names the API server takes for a container.
fn is_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || name.contains('/')
}

impl Resources {
    /// What the API server would refuse in the injected containers' resources: an
    /// unknown resource name, a value that is not a Kubernetes quantity, or a request
    /// above its limit. Checked at start, so a typo does not fail every annotated pod
    /// at admission.
    fn problems(&self) -> Vec<String> {
        use kube_quantity::ParsedQuantity;
        let defaults = Resources::default();
        let mut problems = Vec::new();
        let mut parse = |kind: &str, name: &str, raw: &str| {
            if !is_resource_name(name) {
                problems.push(format!(
                    "resources.{kind}.{name} is not a container resource \
                     (cpu, memory, ephemeral-storage, hugepages-<size>)"
                ));
                return None;
            }
            let quantity = is_quantity(raw)
                .then(|| ParsedQuantity::try_from(raw).ok())
                .flatten();
            match quantity {
                Some(q) if q >= ParsedQuantity::default() => Some(q),
                Some(_) => {
                    problems.push(format!(
                        "resources.{kind}.{name} `{raw}` must not be negative"
                    ));
                    None
                }
                None => {
                    problems.push(format!(
                        "resources.{kind}.{name} `{raw}` is not a Kubernetes quantity \
                         (for example 10m or 0.5 for cpu, 16Mi or 1Gi for memory)"
                    ));
                    None
                }
            }
        };
        let limits: BTreeMap<&str, _> = self
            .limits
            .iter()
            .map(|(name, raw)| (name.as_str(), parse("limits", name, raw)))
            .collect();
        let requests: BTreeMap<&str, _> = self
            .requests
            .iter()
            .map(|(name, raw)| (name.as_str(), parse("requests", name, raw)))
            .collect();
        for (name, request) in &requests {
            if let (Some(request), Some(Some(limit))) = (request, limits.get(name))
                && request > limit
            {
                let default = |map: &BTreeMap<String, String>, v: &str| {
                    if map.get(*name).map(String::as_str) == Some(v) {
                        " (the default)"
                    } else {
                        ""
                    }
                };
                let (req, lim) = (&self.requests[*name], &self.limits[*name]);
                problems.push(format!(
                    "resources.requests.{name} `{req}`{} is above resources.limits.{name} `{lim}`{}",
                    default(&defaults.requests, req),
                    default(&defaults.limits, lim),
                ));
            }
        }
        problems
    }
}

/// Deep-merge `over` into `base` (objects merge by key, anything else replaces; a
/// `null` removes a default, for example `resources: {limits: {cpu: null}}`).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `VAULT_ADDRESS` -> `/vault/address` for every leaf of the default config.
fn leaf_env_names(value: &Value) -> BTreeMap<String, String> {
    fn walk(v: &Value, env: &str, ptr: &str, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let env = if env.is_empty() {
                        k.to_uppercase()
                    } else {
                        format!("{env}_{}", k.to_uppercase())
                    };
                    walk(child, &env, &format!("{ptr}/{k}"), out);
                }
            }
            _ => {
                out.insert(env.to_string(), ptr.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, "", "", &mut out);
    out
}

/// Interpret an env string according to the type of the value it overrides.
fn env_value(current: &Value, raw: &str) -> std::result::Result<Value, String> {
    match current {
        Value::Number(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("`{raw}` is not a whole number")),
        Value::Bool(_) => raw
            .trim()
            .parse::<bool>()
            .map(Value::from)
            .map_err(|_| format!("`{raw}` is not true or false")),
        Value::Array(_) => {
            let raw = raw.trim();
            if raw.starts_with('[') {
                serde_json::from_str(raw).map_err(|e| format!("not a JSON list: {e}"))
            } else {
                Ok(Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn quantities_urls_and_pull_policy_are_checked_at_load() {
        let err = |yaml: &str| {
            Config::from_yaml_and_env(yaml, env(&[]))
                .unwrap_err()
                .to_string()
        };
        let e = err("resources:\n  limits:\n    memory: 64MB\n");
        assert!(
            e.contains("resources.limits.memory `64MB` is not a Kubernetes quantity"),
            "{e}"
        );
        let e = err("resources:\n  requests:\n    cpu: 500m\n");
        assert!(
            e.contains(
                "resources.requests.cpu `500m` is above resources.limits.cpu `200m` (the default)"
            ),
            "{e}"
        );
        let e = err("resources:\n  limits:\n    memory: 8Mi\n");
        assert!(
            e.contains("resources.requests.memory `16Mi` (the default) is above resources.limits.memory `8Mi`"),
            "{e}"
        );
        for bad in ["Mi", "m", "-", "1e3Mi", "10 m", "1.2.3", "0x10", ""] {
            let e = err(&format!("resources:\n  limits:\n    memory: '{bad}'\n"));
            assert!(e.contains("is not a Kubernetes quantity"), "{bad}: {e}");
        }
        let e = err("resources:\n  limits:\n    memroy: 64Mi\n");
        assert!(
            e.contains("resources.limits.memroy is not a container resource"),
            "{e}"
        );
        let e = err("resources:\n  requests:\n    memory: '-1Mi'\n");
        assert!(e.contains("must not be negative"), "{e}");
        let e = err("image_pull_policy: always\nvault:\n  address: vault.vault.svc:8200\n");
        assert!(e.contains("image_pull_policy `always`"), "{e}");
        assert!(
            e.contains("vault.address `vault.vault.svc:8200` must start with https:// or http://; for example https://vault.vault.svc:8200"),
            "{e}"
        );
        let e = err("aws:\n  endpoint_url: 'http://'\n");
        assert!(e.contains("aws.endpoint_url"), "{e}");
        // What Kubernetes accepts passes, unquoted numbers included.
        let c = Config::from_yaml_and_env(
            "resources:\n  requests: {cpu: 0.01, memory: 16Mi}\n  limits: {cpu: 1, memory: 1e8}\n",
            env(&[]),
        )
        .unwrap();
        assert_eq!(c.resources.limits["cpu"], "1");
        assert_eq!(c.resources.requests["cpu"], "0.01");
        for good in [
            "100m",
            "0.5",
            ".5",
            "1.",
            "1e3",
            "1E-2",
            "+1",
            "1Gi",
            "128974848",
            "1Ei",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        // A number in the file can still be overridden from the environment.
        let c = Config::from_yaml_and_env(
            "resources:\n  limits: {cpu: 1}\n",
            env(&[("SECRET_INJECTOR_RESOURCES_LIMITS_CPU", "500m")]),
        )
        .unwrap();
        assert_eq!(c.resources.limits["cpu"], "500m");
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::from_yaml_and_env("", env(&[])).unwrap();
        assert_eq!(c.mount_path, "/secrets");
        assert_eq!(c.vault.auth_method, AuthMethod::Kubernetes);
        assert_eq!(c.vault.audience, "vault");
        assert_eq!(c.aws.audience, "sts.amazonaws.com");
        assert_eq!(c.resources.requests["memory"], "16Mi");
    }

    #[test]
    fn file_then_env_override() {
        let yaml = "vault:\n  address: https://file:8200\n  allowed_addresses: [https://a]\nmount_path: /etc/app\n";
        let c = Config::from_yaml_and_env(
            yaml,
            env(&[
                ("SECRET_INJECTOR_VAULT_ADDRESS", "https://env:8200"),
                (
                    "SECRET_INJECTOR_VAULT_ALLOWED_ADDRESSES",
                    "https://x, https://y",
                ),
                ("SECRET_INJECTOR_TOKEN_EXPIRATION_SECONDS", "900"),
                ("SECRET_INJECTOR_RESOURCES_LIMITS_MEMORY", "128Mi"),
                ("SECRET_INJECTOR_UNRELATED", "ignored"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.vault.address, "https://env:8200");
        assert_eq!(
            c.vault.allowed_addresses,
            [
                AllowedAddress::new("https://x"),
                AllowedAddress::new("https://y")
            ]
        );
        assert_eq!(c.mount_path, "/etc/app");
        assert_eq!(c.token_expiration_seconds, 900);
        assert_eq!(c.resources.limits["memory"], "128Mi");
    }

    #[test]
    fn null_removes_a_default() {
        let c =
            Config::from_yaml_and_env("resources:\n  limits:\n    cpu: null\n", env(&[])).unwrap();
        assert!(!c.resources.limits.contains_key("cpu"));
        assert_eq!(c.resources.limits["memory"], "64Mi");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let e = Config::from_yaml_and_env("vault:\n  adress: x\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        let e = Config::from_yaml_and_env(
            "",
            env(&[("SECRET_INJECTOR_TOKEN_EXPIRATION_SECONDS", "soon")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("SECRET_INJECTOR_TOKEN_EXPIRATION_SECONDS"),
            "{e}"
        );
        let e = Config::from_yaml_and_env("token_expiration_seconds: 60\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("600"), "{e}");
        // A bad enum value is one problem among the others, not the only one reported.
        let e = Config::from_yaml_and_env(
            "image_pull_policy: sometimes\nmount_path: rel\nvault: {auth_method: ldap}\nenv_delivery: fileKeyRef\n",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        for want in [
            "vault.auth_method `ldap` must be `kubernetes` or `jwt`",
            "image_pull_policy `sometimes` must be Always, IfNotPresent or Never",
            "env_delivery `fileKeyRef` must be `exec` or `file-key-ref` (Kubernetes 1.35+)",
            "mount_path `rel` must be an absolute path",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        // in the order the keys are checked, as before they became enums
        let at = |w: &str| e.find(w).unwrap();
        assert!(
            at("mount_path") < at("vault.auth_method")
                && at("vault.auth_method") < at("image_pull_policy"),
            "{e}"
        );
        let c = Config::from_yaml_and_env("env_delivery: file-key-ref\n", env(&[])).unwrap();
        assert_eq!(c.env_delivery, EnvDelivery::FileKeyRef);
        let c =
            Config::from_yaml_and_env("", env(&[("SECRET_INJECTOR_ENV_DELIVERY", "file-key-ref")]))
                .unwrap();
        assert_eq!(c.env_delivery, EnvDelivery::FileKeyRef);
        let c = Config::from_yaml_and_env(
            "image_pull_policy: Never\nvault: {auth_method: jwt}\n",
            env(&[("SECRET_INJECTOR_IMAGE_PULL_POLICY", "Always")]),
        )
        .unwrap();
        assert_eq!(
            (c.image_pull_policy, c.vault.auth_method),
            (PullPolicy::Always, AuthMethod::Jwt)
        );
    }

    /// A typo in a key names its section and the closest key, as annotations do.
    #[test]
    fn unknown_keys_name_their_section_and_the_closest_key() {
        let e = Config::from_yaml_and_env(
            "vault:\n  adress: https://v:8200\nimage_pul_policy: Always\nresources:\n  requests: {cpu: 10m, \"example.com/gpu\": 1}\n",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`vault.adress` is not a config key (did you mean `vault.address`?); the keys of vault are: address,"),
            "{e}"
        );
        assert!(
            e.contains("`image_pul_policy` is not a config key (did you mean `image_pull_policy`?); the keys at the top are:"),
            "{e}"
        );
        assert!(
            !e.contains("gpu"),
            "resource names are not config keys: {e}"
        );
    }

    /// An unknown key is one problem among the others, and a file's problems name it.
    /// An optional setting is `None` however it is left out: absent, `null`, `""`, or
    /// an empty env override; set by the file or the env, it is `Some`.
    #[test]
    fn optional_settings_are_none_unless_set() {
        let load = |yaml: &str, pairs: &[(&str, &str)]| {
            Config::from_yaml_and_env(yaml, env(pairs)).unwrap()
        };
        for yaml in [
            "",
            "aws:\n  endpoint_url: ''\n",
            "aws:\n  endpoint_url: null\n",
        ] {
            assert_eq!(load(yaml, &[]).aws.endpoint_url, None, "{yaml:?}");
        }
        let c = load("", &[("SECRET_INJECTOR_AWS_ENDPOINT_URL", "")]);
        assert_eq!(c.aws.endpoint_url, None);
        assert_eq!(c.aws.endpoint_env().count(), 0);
        let c = load(
            "azure:\n  key_vault_endpoint: 'http://127.0.0.1:1/{vault}'\nvault:\n  ca_cert: ''\n",
            &[("SECRET_INJECTOR_AWS_SSM_ENDPOINT_URL", "http://127.0.0.1:2")],
        );
        assert_eq!(
            c.aws.endpoint_env().collect::<Vec<_>>(),
            [(
                contract::names::AWS_ENDPOINT_URL_SSM_ENV,
                "http://127.0.0.1:2"
            )]
        );
        assert_eq!(
            c.azure.key_vault_endpoint.as_deref(),
            Some("http://127.0.0.1:1/{vault}")
        );
        assert_eq!(c.vault.ca_cert, None);
    }

    #[test]
    fn unknown_keys_come_with_the_other_problems_and_the_file_name() {
        let e = Config::from_yaml_and_env("vault:\n  adress: x\nmount_path: rel\n", env(&[]))
            .unwrap_err();
        assert_eq!((e.file.as_deref(), e.problems.len()), (None, 2), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("`vault.adress` is not a config key") && e.contains("mount_path `rel`"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "vault: [unclosed\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(path.as_path()));
        let e = e.to_string();
        assert!(
            e.starts_with(&format!(
                "{}: config file is not valid YAML",
                path.display()
            )),
            "{e}"
        );
    }
}
