//! The typed shapes of the values the patch adds (the init container, its env and
//! mounts, the volumes), serialized straight to bytes in the field order the API server
//! has always received. Pure data; `patch.rs` fills them.

use serde::Serialize;
use serde_json::Value;

/// A volume of the patch, serialized in the field order the API server has always
/// received.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Volume<'a> {
    Memory {
        name: &'static str,
        #[serde(rename = "emptyDir")]
        empty_dir: EmptyDir,
    },
    Projected {
        name: String,
        projected: Projected<'a>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmptyDir {
    pub(super) medium: &'static str,
    pub(super) size_limit: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Projected<'a> {
    pub(super) default_mode: u32,
    pub(super) sources: [TokenSource<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenSource<'a> {
    pub(super) service_account_token: ServiceAccountToken<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServiceAccountToken<'a> {
    pub(super) audience: &'a str,
    pub(super) expiration_seconds: i64,
    pub(super) path: &'static str,
}

/// The injected container, serialized from these typed fields straight to bytes, in the
/// field order the API server has always received.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InitContainer<'a> {
    pub(super) name: &'static str,
    pub(super) image: &'a str,
    pub(super) image_pull_policy: &'a crate::config::PullPolicy,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<EnvVar<'a>>,
    pub(super) resources: Resources<'a>,
    pub(super) security_context: SecurityContext,
    pub(super) volume_mounts: Vec<Mount<'a>>,
    pub(super) termination_message_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) restart_policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) liveness_probe: Option<Probe>,
}

#[derive(Serialize)]
pub(super) struct Resources<'a> {
    pub(super) requests: &'a std::collections::BTreeMap<String, String>,
    pub(super) limits: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum EnvVar<'a> {
    Value {
        name: &'a str,
        value: std::borrow::Cow<'a, str>,
    },
    /// The downward API: `valueFrom.fieldRef.fieldPath`.
    Field {
        name: &'static str,
        #[serde(rename = "valueFrom")]
        value_from: FieldRef,
    },
    /// As the app container has it (its EKS identity).
    Copied(&'a Value),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FieldRef {
    pub(super) field_ref: FieldPath,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FieldPath {
    pub(super) field_path: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Mount<'a> {
    Own {
        name: String,
        #[serde(rename = "mountPath")]
        mount_path: String,
        #[serde(rename = "readOnly", skip_serializing_if = "Option::is_none")]
        read_only: Option<bool>,
    },
    /// As the app container has it (its EKS identity's token).
    Copied(&'a Value),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SecurityContext {
    pub(super) run_as_non_root: bool,
    pub(super) run_as_user: i64,
    pub(super) allow_privilege_escalation: bool,
    pub(super) capabilities: Capabilities,
    pub(super) read_only_root_filesystem: bool,
    pub(super) seccomp_profile: Seccomp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) run_as_group: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct Capabilities {
    pub(super) drop: [&'static str; 1],
}

#[derive(Serialize)]
pub(super) struct Seccomp {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Probe {
    pub(super) http_get: HttpGet,
    pub(super) period_seconds: u32,
    pub(super) failure_threshold: u32,
}

#[derive(Serialize)]
pub(super) struct HttpGet {
    pub(super) path: &'static str,
    pub(super) port: u16,
}
