//! `serve` and the Kubernetes API: whether the API is required (`--kube`), and the
//! webhook's own image, read from its own pod, which is the image the webhook injects
//! unless the config names one.
//!
//! Why the own image: the injected containers run the agent that ships beside this
//! binary, a version that reads what this webhook writes, so they must run the
//! webhook's image. Kustomize's `images:` rewrites the image of the webhook's
//! container, and nothing else; an env var or a ConfigMap key holding a second copy
//! stays at the old tag in an overlay that sets only `images:`. Read from the pod, the
//! image is whatever the user's overlay made it (tag or digest).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::cli::KubeMode;
use crate::metrics::ImageLabels;
use contract::names;

/// Set in every container of a pod (by the kubelet): the process runs in a cluster.
pub const SERVICE_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";
/// The config's `image`, as an env override.
pub const IMAGE_ENV: &str = "SECRET_INJECTOR_IMAGE";
/// The webhook's container, when its pod has several.
pub const CONTAINER: &str = "secret-injector";
/// How long `serve` tries to read its own pod before refusing to start (the
/// Deployment's liveness probe allows about 35 s).
pub const OWN_IMAGE_DEADLINE: Duration = Duration::from_secs(20);

/// What `--kube` means here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// No Kubernetes config refuses the start; not ready until the cache has synced.
    Required,
    /// A kubeconfig when there is one (readiness waits for the cache, at most 30 s);
    /// none: no cache, with a warning.
    BestEffort,
    /// No cache.
    Off,
}

/// Whether the environment is a pod's (`KUBERNETES_SERVICE_HOST` set and not empty).
pub fn in_cluster(service_host: Option<&str>) -> bool {
    service_host.is_some_and(|h| !h.trim().is_empty())
}

/// `--kube auto` is `required` in a cluster: there a webhook without the ServiceAccount
/// cache silently loses IRSA roles and Azure client IDs. Elsewhere (a laptop, a test) it
/// is best effort.
pub fn need(mode: KubeMode, in_cluster: bool) -> Need {
    match (mode, in_cluster) {
        (KubeMode::Off, _) => Need::Off,
        (KubeMode::Required, _) | (KubeMode::Auto, true) => Need::Required,
        (KubeMode::Auto, false) => Need::BestEffort,
    }
}

/// A client for the API as `need` wants it: `Ok(None)` runs without (off, or best
/// effort with no config, which warns); `Err` refuses the start.
pub async fn client(
    need: Need,
    mode: KubeMode,
    in_cluster: bool,
) -> Result<Option<kube::Client>, String> {
    if need == Need::Off {
        if in_cluster {
            tracing::warn!(
                "--kube off in a cluster: no ServiceAccount cache, so role ARNs and Azure client IDs come from pod annotations only"
            );
        }
        return Ok(None);
    }
    let refused = |what: String| {
        let why = match (mode, in_cluster) {
            (KubeMode::Auto, _) => {
                "in a cluster (KUBERNETES_SERVICE_HOST is set) --kube auto requires the Kubernetes API"
            }
            _ => "--kube required",
        };
        format!(
            "{why}, and {what}. Mount the ServiceAccount token (automountServiceAccountToken: true) or set KUBECONFIG; or run with --kube off (SECRET_INJECTOR_KUBE=off) to take role ARNs and Azure client IDs from pod annotations only"
        )
    };
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(e) if need == Need::Required => {
            return Err(refused(format!(
                "no Kubernetes config was found ({})",
                contract::text::chain_line(&e)
            )));
        }
        Err(e) => {
            tracing::warn!(
                reason = %contract::text::chain_line(&e),
                "no Kubernetes config found: running without the ServiceAccount cache (role ARNs and Azure client IDs come from pod annotations only); --kube off says this is intended"
            );
            return Ok(None);
        }
    };
    match kube::Client::try_from(config) {
        Ok(client) => Ok(Some(client)),
        Err(e) if need == Need::Required => Err(refused(format!(
            "no Kubernetes client could be built ({})",
            contract::text::chain_line(&e)
        ))),
        Err(e) => {
            tracing::warn!(
                error = %contract::text::chain_line(&e),
                "cannot build a Kubernetes client: running without the ServiceAccount cache (role ARNs and Azure client IDs come from pod annotations only)"
            );
            Ok(None)
        }
    }
}

/// Whether the config names the image of the injected containers: an `image` key in
/// the file (`file_yaml`, already validated by [`crate::config::Config::load`]), or a
/// non-empty `SECRET_INJECTOR_IMAGE`. Otherwise the webhook injects its own image.
pub fn image_is_configured(file_yaml: &str, env_image: Option<&str>) -> bool {
    if env_image.is_some_and(|i| !i.trim().is_empty()) {
        return true;
    }
    serde_yaml_ng::from_str::<serde_json::Value>(file_yaml)
        .ok()
        .and_then(|v| v.get("image").cloned())
        .is_some_and(|v| !v.is_null())
}

/// Where the image of the injected containers comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// The webhook's own image, read from its pod.
    Pod,
    /// `image` in the config, or `SECRET_INJECTOR_IMAGE`.
    Config,
    /// The built-in default (`ghcr.io/secret-injector/secret-injector:<version>`).
    Default,
}

impl ImageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSource::Pod => "pod",
            ImageSource::Config => "config",
            ImageSource::Default => "default",
        }
    }
}

/// The image of the injected containers, why, and the webhook's own when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageChoice {
    pub image: String,
    pub source: ImageSource,
    pub own: Option<String>,
}

impl ImageChoice {
    /// A configured image that is not the webhook's own: the injected containers run
    /// another build, or one that does not exist.
    pub fn mismatch(&self) -> bool {
        self.own.as_deref().is_some_and(|own| own != self.image)
    }

    pub fn labels(&self) -> ImageLabels {
        ImageLabels {
            image: self.image.clone(),
            source: self.source.as_str().to_string(),
            own: self.own.clone().unwrap_or_default(),
        }
    }

    /// The warning for a mismatch: loud, with what to do.
    pub fn mismatch_warning(&self) -> Option<String> {
        let own = self.own.as_deref().filter(|_| self.mismatch())?;
        Some(format!(
            "the injected containers' image `{}` (config `image` or {IMAGE_ENV}) is not this webhook's own image `{own}`: every injected pod runs another build, or an image that does not exist. Remove `image` from the config and {IMAGE_ENV} from the Deployment (the webhook then injects its own image), or make them equal",
            self.image
        ))
    }
}

/// The configured image wins; else the webhook's own; else the built-in default.
pub fn choose_image(configured: Option<&str>, builtin: &str, own: Option<&str>) -> ImageChoice {
    let own = own.map(str::to_string);
    match (configured, &own) {
        (Some(image), _) => ImageChoice {
            image: image.to_string(),
            source: ImageSource::Config,
            own,
        },
        (None, Some(image)) => ImageChoice {
            image: image.clone(),
            source: ImageSource::Pod,
            own,
        },
        (None, None) => ImageChoice {
            image: builtin.to_string(),
            source: ImageSource::Default,
            own: None,
        },
    }
}

/// The webhook's own pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfPod {
    pub namespace: String,
    pub name: String,
}

impl SelfPod {
    /// From the downward API (`SECRET_INJECTOR_POD_NAME`, `SECRET_INJECTOR_POD_NAMESPACE`,
    /// as the Deployment sets them); failing that the hostname (a pod's name, unless
    /// its spec sets `hostname`) and the client's namespace (the ServiceAccount's).
    pub fn from_env(env: impl Fn(&str) -> Option<String>, default_namespace: &str) -> Option<Self> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let name = set(names::POD_NAME_ENV).or_else(|| set("HOSTNAME"))?;
        let namespace = set(names::POD_NAMESPACE_ENV)
            .or_else(|| Some(default_namespace.to_string()).filter(|n| !n.is_empty()))?;
        Some(SelfPod { namespace, name })
    }
}

/// The image of the webhook's container in `pod`: the only container, or the one named
/// [`CONTAINER`].
pub fn image_of(pod: &Pod) -> Result<String, String> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let container = match containers {
        [only] => only,
        several => several
            .iter()
            .find(|c| c.name == CONTAINER)
            .ok_or_else(|| {
                format!(
                    "the pod has {} containers and none is named `{CONTAINER}`",
                    several.len()
                )
            })?,
    };
    container
        .image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| format!("container `{}` has no image", container.name))
}

/// Read the webhook's own image from its pod, retrying transient failures until
/// `deadline`. Unauthorized, forbidden and not found are final at once.
pub async fn own_image(
    client: kube::Client,
    pod: &SelfPod,
    deadline: Duration,
) -> Result<String, String> {
    let api = kube::Api::<Pod>::namespaced(client, &pod.namespace);
    let what = format!(
        "cannot read this webhook's pod {}/{}",
        pod.namespace, pod.name
    );
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let error = match tokio::time::timeout(left, api.get(&pod.name)).await {
            Ok(Ok(found)) => return image_of(&found).map_err(|e| format!("{what}'s image: {e}")),
            Ok(Err(kube::Error::Api(status))) if matches!(status.code, 401 | 403 | 404) => {
                return Err(format!(
                    "{what}: {} ({} {})",
                    status.message, status.code, status.reason
                ));
            }
            Ok(Err(e)) => contract::text::chain_line(&e),
            Err(_) => "timed out".to_string(),
        };
        if start.elapsed() + delay >= deadline {
            return Err(format!("{what} within {}s: {error}", deadline.as_secs()));
        }
        tracing::warn!(error = %error, "{what}; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_required_in_a_cluster_only() {
        assert!(!in_cluster(None));
        assert!(!in_cluster(Some(" ")));
        assert!(in_cluster(Some("10.96.0.1")));
        for (mode, in_cluster, want) in [
            (KubeMode::Auto, true, Need::Required),
            (KubeMode::Auto, false, Need::BestEffort),
            (KubeMode::Required, false, Need::Required),
            (KubeMode::Required, true, Need::Required),
            (KubeMode::Off, true, Need::Off),
            (KubeMode::Off, false, Need::Off),
        ] {
            assert_eq!(
                need(mode, in_cluster),
                want,
                "{mode:?} in cluster: {in_cluster}"
            );
        }
    }

    #[test]
    fn the_image_is_configured_by_the_file_or_the_env() {
        assert!(!image_is_configured("", None));
        assert!(!image_is_configured(
            "mount_path: /s\n# image: x\n",
            Some("")
        ));
        assert!(!image_is_configured("vault: {image: x}\n", None));
        assert!(image_is_configured("image: r/si:1\n", None));
        assert!(image_is_configured("", Some("r/si:1")));
    }

    #[test]
    fn the_configured_image_wins_then_the_own_then_the_default() {
        let c = choose_image(None, "ghcr/si:0.1.0", Some("r/si:2"));
        assert_eq!(
            (c.image.as_str(), c.source, c.mismatch()),
            ("r/si:2", ImageSource::Pod, false)
        );
        assert_eq!(c.mismatch_warning(), None);
        let c = choose_image(Some("r/si:1"), "ghcr/si:0.1.0", Some("r/si:2"));
        assert_eq!(
            (c.image.as_str(), c.source, c.mismatch()),
            ("r/si:1", ImageSource::Config, true)
        );
        let warning = c.mismatch_warning().unwrap();
        assert!(
            warning.contains("`r/si:1`") && warning.contains("`r/si:2`"),
            "{warning}"
        );
        let c = choose_image(Some("r/si:2"), "ghcr/si:0.1.0", Some("r/si:2"));
        assert!(!c.mismatch());
        let c = choose_image(Some("r/si:1"), "ghcr/si:0.1.0", None);
        assert_eq!((c.source, c.mismatch()), (ImageSource::Config, false));
        let c = choose_image(None, "ghcr/si:0.1.0", None);
        assert_eq!(
            (c.image.as_str(), c.source),
            ("ghcr/si:0.1.0", ImageSource::Default)
        );
        assert_eq!(c.labels().own, "");
    }

    #[test]
    fn the_own_pod_comes_from_the_downward_api_or_the_hostname() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let pod = |ns: &str, name: &str| {
            Some(SelfPod {
                namespace: ns.into(),
                name: name.into(),
            })
        };
        assert_eq!(
            SelfPod::from_env(
                env(&[
                    ("SECRET_INJECTOR_POD_NAME", "si-1"),
                    ("SECRET_INJECTOR_POD_NAMESPACE", "si-ns"),
                    ("HOSTNAME", "other")
                ]),
                "default"
            ),
            pod("si-ns", "si-1")
        );
        assert_eq!(
            SelfPod::from_env(env(&[("HOSTNAME", "si-2")]), "sa-ns"),
            pod("sa-ns", "si-2")
        );
        assert_eq!(SelfPod::from_env(env(&[]), "sa-ns"), None);
        assert_eq!(SelfPod::from_env(env(&[("HOSTNAME", "si-2")]), ""), None);
    }

    #[test]
    fn the_own_image_is_the_only_container_or_the_named_one() {
        let pod = |containers: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
        };
        assert_eq!(
            image_of(&pod(serde_json::json!([{"name": "x", "image": "r/si:1"}]))),
            Ok("r/si:1".into())
        );
        assert_eq!(
            image_of(&pod(serde_json::json!([
                {"name": "proxy", "image": "envoy"},
                {"name": "secret-injector", "image": "r/si@sha256:ab"}
            ]))),
            Ok("r/si@sha256:ab".into())
        );
        assert!(
            image_of(&pod(
                serde_json::json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
            ))
            .is_err()
        );
        assert!(image_of(&pod(serde_json::json!([{"name": "x"}]))).is_err());
    }
}
