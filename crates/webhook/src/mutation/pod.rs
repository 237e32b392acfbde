//! The fields of a Pod that the mutation reads, and nothing else.
//!
//! Admission deserializes only these (unknown fields are skipped), so the hot path does
//! not build a full `k8s_openapi` Pod, and the pure logic does not depend on wire details.
//! The patch never re-serializes these types: it only adds to the original object, so
//! fields we do not model are left exactly as they were.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodView {
    pub metadata: MetaView,
    pub spec: Option<PodSpecView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetaView {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpecView {
    pub containers: Vec<ContainerView>,
    pub init_containers: Option<Vec<ContainerView>>,
    pub volumes: Option<Vec<VolumeView>>,
    pub security_context: Option<PodSecurityContextView>,
    pub service_account_name: Option<String>,
    pub host_network: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerView {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVarView>>,
    pub volume_mounts: Option<Vec<VolumeMountView>>,
    pub security_context: Option<SecurityContextView>,
    pub ports: Option<Vec<PortView>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortView {
    pub container_port: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarView {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMountView {
    pub name: String,
    pub mount_path: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeView {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSecurityContextView {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub fs_group: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContextView {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
}

impl PodView {
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.annotations.as_ref().unwrap_or(&EMPTY)
    }

    pub fn containers(&self) -> &[ContainerView] {
        self.spec.as_ref().map_or(&[], |s| &s.containers)
    }

    pub fn init_containers(&self) -> &[ContainerView] {
        self.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[])
    }

    pub fn volumes(&self) -> &[VolumeView] {
        self.spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[])
    }

    pub fn pod_security(&self) -> Option<&PodSecurityContextView> {
        self.spec.as_ref().and_then(|s| s.security_context.as_ref())
    }

    pub fn service_account(&self) -> &str {
        self.spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }

    /// A name for messages: the pod's name, else its generateName prefix.
    pub fn display_name(&self) -> String {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ => "<unnamed>".to_string(),
        }
    }

    /// The effective user a container runs as, when the pod spec says so.
    pub fn run_as_user(&self, c: &ContainerView) -> Option<i64> {
        c.security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .or_else(|| self.pod_security().and_then(|s| s.run_as_user))
    }

    /// The effective group a container runs as, when the pod spec says so.
    pub fn run_as_group(&self, c: &ContainerView) -> Option<i64> {
        c.security_context
            .as_ref()
            .and_then(|s| s.run_as_group)
            .or_else(|| self.pod_security().and_then(|s| s.run_as_group))
    }
}
