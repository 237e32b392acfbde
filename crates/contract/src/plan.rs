//! The fetch plan: everything the init container is to fetch and write, as the webhook
//! hands it over (JSON in [`super::names::PLAN_ENV`]). Only references and settings,
//! never a value.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::reference::{Provider, SecretRef};

/// The files and variables the init container produces, handed to it as JSON.
/// Only references and settings: never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPlan {
    /// `secret-<name>`: each declared secret by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// `template-<name>`: template source by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, String>,
    /// Every file to write, with its mode.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, u32>,
    /// `env-<VAR>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, SecretRef>,
    /// `env-from`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<SecretRef>,
    /// `env-from-allow`: loader variables (`envfile::is_loader_variable`) that `env-from`
    /// may load; init refuses any other.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub env_from_allow: BTreeSet<String>,
    /// Mode of files without `file-mode-<name>`, and of the env file.
    #[serde(default = "default_mode")]
    pub default_mode: u32,
    /// How the `env-<VAR>` values reach the app: which env file init writes, and
    /// whether it copies the wrapper.
    #[serde(default, skip_serializing_if = "EnvDelivery::is_exec")]
    pub env_delivery: EnvDelivery,
}

/// How env mode gives the app its variables (config `env_delivery`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvDelivery {
    /// The app's command is wrapped by `exec`, which loads the variables and execs it:
    /// the values exist only in the process. Any Kubernetes version.
    #[default]
    #[serde(rename = "exec")]
    Exec,
    /// Kubernetes 1.35+ (EnvFiles, beta): `env-<VAR>` become `env[].valueFrom.fileKeyRef`
    /// entries the kubelet reads from the file init writes; no wrapper, no command
    /// needed. A pod with `env-from` (names unknown at admission) keeps the wrapper.
    #[serde(rename = "file-key-ref")]
    FileKeyRef,
}

impl EnvDelivery {
    pub fn is_exec(&self) -> bool {
        *self == EnvDelivery::Exec
    }
}

fn default_mode() -> u32 {
    0o444
}

impl Default for FetchPlan {
    fn default() -> Self {
        FetchPlan {
            secrets: BTreeMap::new(),
            templates: BTreeMap::new(),
            files: BTreeMap::new(),
            env: BTreeMap::new(),
            env_from: Vec::new(),
            env_from_allow: BTreeSet::new(),
            default_mode: default_mode(),
            env_delivery: EnvDelivery::Exec,
        }
    }
}

impl FetchPlan {
    pub fn refs(&self) -> impl Iterator<Item = &SecretRef> {
        self.secrets
            .values()
            .chain(self.env.values())
            .chain(self.env_from.iter())
    }

    pub fn uses(&self, provider: Provider) -> bool {
        self.refs().any(|r| r.provider == provider)
    }

    /// Whether a store reached with an AWS identity is used (Secrets Manager or SSM).
    pub fn uses_aws(&self) -> bool {
        self.refs().any(|r| r.provider.is_aws())
    }

    pub fn env_mode(&self) -> bool {
        !self.env.is_empty() || !self.env_from.is_empty()
    }

    /// Mode of the env file: the default file mode.
    pub fn env_mode_bits(&self) -> u32 {
        self.default_mode
    }
}
