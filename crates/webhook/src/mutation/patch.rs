//! (pod, [`InjectionSpec`], [`Config`]) -> RFC 6902 JSON Patch. Pure.
//!
//! The patch only adds: arrays and the annotations map are created when absent, elements
//! are appended (the init container is inserted first), and nothing the pod already has
//! is overwritten, except the `command` of env-mode containers, which is wrapped, and
//! with `env_delivery: file-key-ref` a container's own `env` entry of an injected name.
//! Non-selected containers are never touched.

use json_patch::jsonptr::PointerBuf;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::Config;
use crate::mutation::pod::PodView;
use crate::mutation::spec::{self, InjectionSpec, STATUS, STATUS_INJECTED, Target};
use crate::mutation::wire::*;
use contract::plan::EnvDelivery;
use contract::reference::Provider;

use contract::names::*;

/// Non-root uid/gid of the injected containers when the app's user is unknown
/// (the distroless `nonroot` user of the image).
pub const DEFAULT_UID: i64 = 65532;

/// Env names that carry an AWS identity an EKS webhook gave the app containers.
const AWS_IDENTITY_ENV: &[&str] = &[
    AWS_ROLE_ARN_ENV,
    AWS_WEB_IDENTITY_TOKEN_FILE_ENV,
    AWS_ROLE_SESSION_NAME_ENV,
    AWS_STS_REGIONAL_ENDPOINTS_ENV,
    AWS_CONTAINER_CREDENTIALS_FULL_URI_ENV,
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_ENV,
];

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

/// An RFC 6902 JSON Patch whose values are already serialized: admission writes it out
/// as it is, and the init container, the largest value, goes from typed structs
/// straight to bytes ([`InitContainer`]) without a `serde_json::Value` tree.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Patch(pub Vec<Op>);

/// One operation: `add`, or `replace` for a wrapped command; the patch never removes.
#[derive(Clone, Debug, Serialize)]
pub struct Op {
    op: &'static str,
    path: PointerBuf,
    value: Box<RawValue>,
}

impl Patch {
    /// The patch as JSON bytes, written into one buffer of about the right size (the
    /// values are already serialized), not grown step by step.
    pub fn to_vec(&self) -> Vec<u8> {
        let size: usize = self
            .0
            .iter()
            .map(|op| op.value.get().len() + op.path.as_str().len() + 32)
            .sum();
        let mut bytes = Vec::with_capacity(size + 2);
        serde_json::to_writer(&mut bytes, self).expect("a patch serializes");
        bytes
    }

    /// The same patch as a `json_patch::Patch`, to apply it to a document (`inject -f`).
    pub fn to_json_patch(&self) -> json_patch::Patch {
        let text = serde_json::to_string(self).expect("a patch serializes");
        serde_json::from_str(&text).expect("the patch is a JSON Patch")
    }
}

fn op(op: &'static str, path: PointerBuf, value: &impl Serialize) -> Op {
    let value = serde_json::value::to_raw_value(value).expect("patch values serialize");
    Op { op, path, value }
}

fn add(path: PointerBuf, value: impl Serialize) -> Op {
    op("add", path, &value)
}

/// Advice when `aws:` references have no identity the webhook can see: the SDK's default
/// chain in the pod then decides (EKS Pod Identity, or the node's instance role).
pub fn aws_identity_warning(pod: &PodView, spec: &InjectionSpec) -> Option<String> {
    let unseen = spec.plan.uses_aws()
        && spec.aws.role_arn.is_none()
        && copied_aws_identity(pod, spec).is_none();
    unseen.then(|| {
        "aws: or ssm: references but no role (no aws-role-arn annotation, service-account role-arn or EKS env): the SDK default chain decides, EKS Pod Identity or the node role".to_string()
    })
}

/// Build the patch for a validated spec.
pub fn build(pod: &PodView, spec: &InjectionSpec, config: &Config) -> Patch {
    let plan = &spec.plan;
    // 1. The status annotation.
    let mut ops = vec![if pod.metadata.annotations.is_some() {
        add(
            ptr(&["metadata", "annotations", STATUS]),
            json!(STATUS_INJECTED),
        )
    } else {
        add(
            ptr(&["metadata", "annotations"]),
            json!({ STATUS: STATUS_INJECTED }),
        )
    }];

    // 2. Volumes.
    let copied_aws = if plan.uses_aws() && !spec.aws.explicit {
        copied_aws_identity(pod, spec)
    } else {
        None
    };
    let mut token_providers = Vec::new();
    if plan.uses(Provider::Vault) {
        // The audience of the address this pod talks to (see `vault.allowed_addresses`).
        token_providers.push((Provider::Vault, &spec.vault.audience));
    }
    if plan.uses_aws() && copied_aws.is_none() && spec.aws.role_arn.is_some() {
        token_providers.push((Provider::Aws, &config.aws.audience));
    }
    // Workload Identity Federation: the provider's name is the token's audience.
    if let Some(provider) = spec
        .gcp
        .as_ref()
        .and_then(|g| g.workload_identity_provider.as_ref())
    {
        token_providers.push((Provider::Gcp, provider));
    }
    if spec.azure.is_some() {
        token_providers.push((Provider::Azure, &config.azure.audience));
    }
    append_all(
        &mut ops,
        &["spec", "volumes"],
        pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some(),
        volumes(spec, config, &token_providers),
    );

    // 3. Mounts (and the wrapped command) in the selected containers.
    for t in &spec.targets {
        target_ops(&mut ops, pod, spec, t);
    }

    // 4. The init container, first of all init containers.
    let init = init_container(pod, spec, config, &token_providers, copied_aws.as_ref());
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some()
    {
        ops.push(add(ptr(&["spec", "initContainers", "0"]), &init));
    } else {
        ops.push(add(ptr(&["spec", "initContainers"]), [&init]));
    }
    Patch(ops)
}

/// The memory volumes and the projected token volumes.
fn volumes<'a>(
    spec: &InjectionSpec,
    config: &Config,
    token_providers: &[(Provider, &'a String)],
) -> Vec<Volume<'a>> {
    let mut volumes = Vec::new();
    if !spec.plan.files.is_empty() {
        volumes.push(memory_volume(FILES_VOLUME, "16Mi"));
    }
    if spec.plan.env_mode() {
        // The env file, and the exec-only wrapper init copies (under 1 MiB in a
        // release build): tmpfs counts against the pod's memory, so keep the cap small.
        volumes.push(memory_volume(ENV_VOLUME, ENV_VOLUME_SIZE));
    }
    for (provider, audience) in token_providers {
        volumes.push(Volume::Projected {
            name: token_volume(*provider),
            projected: Projected {
                // Mounted only into the injected containers; readable by their user
                // whatever uid the pod's other containers run as.
                default_mode: 0o444,
                sources: [TokenSource {
                    service_account_token: ServiceAccountToken {
                        audience,
                        expiration_seconds: config.token_expiration_seconds,
                        path: TOKEN_FILE_NAME,
                    },
                }],
            },
        });
    }
    volumes
}

/// The mounts of one selected container, and in env mode its wrapped command.
fn target_ops(ops: &mut Vec<Op>, pod: &PodView, spec: &InjectionSpec, t: &Target) {
    let plan = &spec.plan;
    let ct = spec::container(pod, t);
    let list = if t.init {
        "initContainers"
    } else {
        "containers"
    };
    let index = t.index.to_string();
    let wrapped = plan.env_mode() && plan.env_delivery == EnvDelivery::Exec;
    let mut mounts = Vec::new();
    if !plan.files.is_empty() {
        mounts.push(mount(FILES_VOLUME, spec.mount_path.as_str(), true));
    }
    if wrapped {
        mounts.push(mount(ENV_VOLUME, ENV_MOUNT_PATH, true));
    }
    append_all(
        ops,
        &["spec", list, &index, "volumeMounts"],
        ct.volume_mounts.is_some(),
        mounts,
    );
    if plan.env_delivery == EnvDelivery::FileKeyRef {
        // The kubelet reads each variable from the file init wrote (Kubernetes 1.35+).
        // The annotation wins, as with the wrapper: an entry of the container's own with
        // the same name is replaced (the last one, which the kubelet would use), so the
        // spec never holds two; the others are appended.
        let own = ct.env.as_deref().unwrap_or_default();
        let mut appended = Vec::new();
        for name in plan.env.keys() {
            let entry = json!({"name": name, "valueFrom": {"fileKeyRef": {
                "volumeName": ENV_VOLUME,
                "path": KUBELET_ENV_FILE_NAME,
                "key": name,
            }}});
            match own.iter().rposition(|e| e.name == *name) {
                Some(at) => {
                    let path = ptr(&["spec", list, &index, "env", &at.to_string()]);
                    ops.push(op("replace", path, &entry));
                }
                None => appended.push(entry),
            }
        }
        append_all(
            ops,
            &["spec", list, &index, "env"],
            ct.env.is_some(),
            appended,
        );
    }
    if wrapped {
        let original = match &ct.command {
            Some(cmd) if !cmd.is_empty() => cmd.clone(),
            _ => spec.command.clone().unwrap_or_default(),
        };
        let wrapped = contract::args::exec_command(EXEC_BINARY, ENV_FILE, original);
        let path = ptr(&["spec", list, &index, "command"]);
        let kind = if ct.command.is_some() {
            "replace"
        } else {
            "add"
        };
        ops.push(op(kind, path, &wrapped));
    }
}

/// Append `items` to the array at `path`, creating it when the pod has none.
fn append_all<T: Serialize>(ops: &mut Vec<Op>, path: &[&str], exists: bool, items: Vec<T>) {
    if items.is_empty() {
        return;
    }
    if exists {
        for item in items {
            let mut p = ptr(path);
            p.push_back("-");
            ops.push(add(p, item));
        }
    } else {
        ops.push(add(ptr(path), items));
    }
}

/// The env volume's cap: the wrapper (under 1 MiB) and an env file no larger than what
/// `execve` accepts for the environment (a few MiB at most on Linux).
const ENV_VOLUME_SIZE: &str = "8Mi";

fn memory_volume(name: &'static str, size_limit: &'static str) -> Volume<'static> {
    Volume::Memory {
        name,
        empty_dir: EmptyDir {
            medium: "Memory",
            size_limit,
        },
    }
}

/// The AWS identity env and token mounts an EKS webhook already gave an app container.
struct CopiedAws {
    env: Vec<Value>,
    mounts: Vec<Value>,
    /// AWS_REGION (or AWS_DEFAULT_REGION) of the app container.
    region: Option<String>,
}

fn copied_aws_identity(pod: &PodView, spec: &InjectionSpec) -> Option<CopiedAws> {
    for t in &spec.targets {
        let ct = spec::container(pod, t);
        let env: Vec<(&str, &str)> = ct
            .env
            .iter()
            .flatten()
            .filter(|e| AWS_IDENTITY_ENV.contains(&e.name.as_str()))
            .filter_map(|e| e.value.as_deref().map(|v| (e.name.as_str(), v)))
            .collect();
        // One entry per name, the last (the value the container gets): repeated names
        // must not multiply the mount comparisons below.
        let mut seen = std::collections::BTreeSet::new();
        let mut env: Vec<(&str, &str)> = env
            .into_iter()
            .rev()
            .filter(|(k, _)| seen.insert(*k))
            .collect();
        env.reverse();
        let has = |n: &str| env.iter().any(|(k, _)| *k == n);
        let web_identity = has(AWS_ROLE_ARN_ENV) && has(AWS_WEB_IDENTITY_TOKEN_FILE_ENV);
        let pod_identity = has(AWS_CONTAINER_CREDENTIALS_FULL_URI_ENV)
            && has(AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_ENV);
        if !web_identity && !pod_identity {
            continue;
        }
        let files: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k.ends_with("_FILE"))
            .map(|(_, v)| *v)
            .collect();
        let mounts: Vec<Value> = ct
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| {
                let dir = m.mount_path.trim_end_matches('/');
                files.iter().any(|f| {
                    f.strip_prefix(dir)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .map(|m| json!({"name": m.name, "mountPath": m.mount_path, "readOnly": true}))
            .collect();
        if mounts.is_empty() {
            continue;
        }
        let region = ct
            .env
            .iter()
            .flatten()
            .filter(|e| e.name == AWS_REGION_ENV || e.name == AWS_DEFAULT_REGION_ENV)
            .find_map(|e| e.value.clone());
        return Some(CopiedAws {
            region,
            env: env
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect(),
            mounts,
        });
    }
    None
}

fn env<'a>(name: &'a str, value: impl Into<std::borrow::Cow<'a, str>>) -> EnvVar<'a> {
    EnvVar::Value {
        name,
        value: value.into(),
    }
}

fn mount<'a>(name: impl Into<String>, mount_path: impl Into<String>, read_only: bool) -> Mount<'a> {
    Mount::Own {
        name: name.into(),
        mount_path: mount_path.into(),
        read_only: read_only.then_some(true),
    }
}

fn init_container<'a>(
    pod: &PodView,
    spec: &'a InjectionSpec,
    config: &'a Config,
    token_providers: &[(Provider, &String)],
    copied_aws: Option<&'a CopiedAws>,
) -> InitContainer<'a> {
    let plan = &spec.plan;
    let files = !plan.files.is_empty();
    let args = contract::args::init_args(
        spec.refresh_interval.is_some(),
        files.then_some(INIT_FILES_DIR),
        plan.env_mode().then_some(INIT_ENV_DIR),
    );
    let mut mounts = Vec::new();
    if files {
        mounts.push(mount(FILES_VOLUME, INIT_FILES_DIR, false));
    }
    if plan.env_mode() {
        mounts.push(mount(ENV_VOLUME, INIT_ENV_DIR, false));
    }
    for (provider, _) in token_providers {
        mounts.push(mount(token_volume(*provider), token_dir(*provider), true));
    }

    let field = |name, field_path| EnvVar::Field {
        name,
        value_from: FieldRef {
            field_ref: FieldPath { field_path },
        },
    };
    let mut envs = vec![
        env(
            PLAN_ENV,
            serde_json::to_string(plan).expect("plan serializes"),
        ),
        env(LOG_ENV, config.init_log_level.as_str()),
        field(POD_NAMESPACE_ENV, "metadata.namespace"),
        field(POD_NAME_ENV, "metadata.name"),
    ];
    if plan.uses(Provider::Vault) {
        envs.extend(vault_env(spec, config));
    }
    if let Some(gcp) = &spec.gcp {
        envs.push(env(
            contract::cloud::GCP_ENV,
            serde_json::to_string(gcp).expect("settings serialize"),
        ));
    }
    if let Some(azure) = &spec.azure {
        envs.push(env(
            contract::cloud::AZURE_ENV,
            serde_json::to_string(azure).expect("settings serialize"),
        ));
    }
    if plan.uses_aws() {
        envs.extend(aws_env(spec, config, copied_aws));
        if let Some(copied) = copied_aws {
            mounts.extend(copied.mounts.iter().map(Mount::Copied));
        }
    }

    let mut container = InitContainer {
        name: INIT_CONTAINER,
        image: &config.image,
        image_pull_policy: &config.image_pull_policy,
        args,
        env: envs,
        resources: Resources {
            requests: &config.resources.requests,
            limits: &config.resources.limits,
        },
        security_context: security_context(pod, spec),
        volume_mounts: mounts,
        termination_message_policy: "FallbackToLogsOnError",
        restart_policy: None,
        startup_probe: None,
        liveness_probe: None,
    };
    if let Some(interval) = spec.refresh_interval {
        as_sidecar(&mut container, interval, spec.reload_url.as_deref());
    }
    container
}

/// The refresh sidecar: the same container, kept running. A native sidecar (an init
/// container with `restartPolicy: Always`, GA since Kubernetes 1.33): the kubelet
/// starts the app containers once its startup probe passes, that is once the first
/// files are written, and stops it after them, so Jobs still complete.
fn as_sidecar<'a>(
    container: &mut InitContainer<'a>,
    interval: std::time::Duration,
    reload_url: Option<&'a str>,
) {
    container.name = REFRESH_CONTAINER;
    container.restart_policy = Some("Always");
    container.env.push(env(
        REFRESH_INTERVAL_ENV,
        humantime::format_duration(interval).to_string(),
    ));
    if let Some(url) = reload_url {
        container.env.push(env(RELOAD_URL_ENV, url));
    }
    let probe = |path, period_seconds, failure_threshold| Probe {
        http_get: HttpGet {
            path,
            port: PROBE_PORT,
        },
        period_seconds,
        failure_threshold,
    };
    // The first fetch may retry for init's 2m deadline: 5 minutes before a restart.
    container.startup_probe = Some(probe("/readyz", 2, 150));
    container.liveness_probe = Some(probe("/healthz", 30, 3));
}

/// How the init container reaches Vault and as whom.
fn vault_env<'a>(spec: &'a InjectionSpec, config: &'a Config) -> Vec<EnvVar<'a>> {
    let v = &spec.vault;
    let mut envs = vec![
        env(VAULT_ADDR_ENV, v.address.as_str()),
        env(VAULT_ROLE_ENV, v.role.as_str()),
        env(VAULT_AUTH_PATH_ENV, v.auth_path.as_str()),
        env(VAULT_AUTH_METHOD_ENV, v.auth_method.to_string()),
        env(VAULT_TOKEN_FILE_ENV, token_path(Provider::Vault)),
    ];
    if let Some(pem) = &config.vault.ca_pem {
        envs.push(env(VAULT_CA_PEM_ENV, pem.as_str()));
    }
    if !config.vault.namespace.is_empty() {
        envs.push(env(VAULT_NAMESPACE_ENV, config.vault.namespace.as_str()));
    }
    envs
}

/// The AWS region, endpoints and identity of the init container.
fn aws_env<'a>(
    spec: &'a InjectionSpec,
    config: &'a Config,
    copied_aws: Option<&'a CopiedAws>,
) -> Vec<EnvVar<'a>> {
    // The app's own region (set by the EKS webhook, say) unless the pod names one.
    let app_region = copied_aws.and_then(|c| c.region.as_deref());
    let region = match app_region {
        Some(r) if !spec.aws.region_explicit => r,
        _ => spec.aws.region.as_str(),
    };
    let mut envs = vec![env(AWS_REGION_ENV, region)];
    envs.extend((config.aws.endpoint_env()).map(|(name, url)| env(name, url)));
    if let Some(copied) = copied_aws {
        envs.extend(copied.env.iter().map(EnvVar::Copied));
    } else if let Some(arn) = &spec.aws.role_arn {
        envs.push(env(AWS_ROLE_ARN_ENV, arn.as_str()));
        envs.push(env(
            AWS_WEB_IDENTITY_TOKEN_FILE_ENV,
            token_path(Provider::Aws),
        ));
        envs.push(env(AWS_ROLE_SESSION_NAME_ENV, "secret-injector"));
    }
    envs
}

/// Non-root, nothing writable but the memory volumes, no capabilities; the app's user
/// when the pod names one, so the files belong to the app.
fn security_context(pod: &PodView, spec: &InjectionSpec) -> SecurityContext {
    let (uid, gid) = match spec::app_user(pod, &spec.targets) {
        Some((uid, gid)) => (uid, gid),
        None => (DEFAULT_UID, Some(DEFAULT_UID)),
    };
    SecurityContext {
        run_as_non_root: true,
        run_as_user: uid,
        allow_privilege_escalation: false,
        capabilities: Capabilities { drop: ["ALL"] },
        read_only_root_filesystem: true,
        seccomp_profile: Seccomp {
            kind: "RuntimeDefault",
        },
        run_as_group: gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutation::spec::{Context, Decision};

    fn run(pod: &Value) -> (Value, Patch) {
        let view: PodView = serde_json::from_value(pod.clone()).unwrap();
        let cfg = Config::default();
        let Ok(Decision::Inject(spec)) = spec::parse(&view, &cfg, &Context::default()) else {
            panic!("expected injection");
        };
        let patch = build(&view, &spec, &cfg);
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch.to_json_patch()).unwrap();
        (out, patch)
    }

    #[test]
    fn creates_missing_arrays_and_annotations() {
        let pod = json!({
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
        });
        // No annotations map: cannot opt in, so add it via a pod that has one but test
        // the creation path by removing it from the view.
        let view: PodView = serde_json::from_value(json!({
            "metadata": {"annotations": {"secret-injector.io/secret-a": "vault:kv/a"}},
            "spec": pod["spec"],
        }))
        .unwrap();
        let cfg = Config::default();
        let Ok(Decision::Inject(spec)) = spec::parse(&view, &cfg, &Context::default()) else {
            panic!()
        };
        let mut bare = view.clone();
        bare.metadata.annotations = None;
        let patch = build(&bare, &spec, &cfg);
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch.to_json_patch()).unwrap();
        assert_eq!(out["metadata"]["annotations"][STATUS], "injected");
        assert_eq!(out["spec"]["initContainers"][0]["name"], INIT_CONTAINER);
        assert_eq!(out["spec"]["volumes"][0]["emptyDir"]["medium"], "Memory");
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            "/secrets"
        );
    }

    #[test]
    fn inserts_first_and_escapes_pointers() {
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/secret-a": "vault:kv/a", "x~y/z": "1"}},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "m"}],
                "containers": [{"name": "app", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
        });
        let (out, patch) = run(&pod);
        let text = serde_json::to_string(&patch).unwrap();
        assert!(
            text.contains("/metadata/annotations/secret-injector.io~1status"),
            "{text}"
        );
        assert_eq!(out["spec"]["initContainers"][0]["name"], INIT_CONTAINER);
        assert_eq!(out["spec"]["initContainers"][1]["name"], "migrate");
        assert_eq!(out["spec"]["volumes"][0]["name"], "v");
        assert_eq!(out["spec"]["containers"][0]["volumeMounts"][0]["name"], "v");
        assert_eq!(out["metadata"]["annotations"]["x~y/z"], "1");
    }

    #[test]
    fn vault_token_only_in_the_init_container() {
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/secret-a": "vault:kv/a"}},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
        });
        let (out, _) = run(&pod);
        let vol = &out["spec"]["volumes"][1];
        assert_eq!(vol["name"], "secret-injector-token-vault");
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "vault"
        );
        let init_mounts = out["spec"]["initContainers"][0]["volumeMounts"].to_string();
        assert!(init_mounts.contains("secret-injector-token-vault"));
        assert!(!out["spec"]["containers"].to_string().contains("token"));
        assert!(
            out["spec"]["containers"][1].get("volumeMounts").is_none(),
            "mesh sidecar untouched"
        );
    }

    /// The Vault token volume has the audience of the address the pod talks to, and
    /// the init container is sent to that address.
    #[test]
    fn the_vault_token_has_the_audience_of_the_pods_address() {
        let mut cfg = Config::default();
        cfg.vault.allowed_addresses = vec![crate::config::AllowedAddress::with_audience(
            "https://vault-eu.example:8200",
            "vault-eu",
        )];
        let audience_and_addr = |annotations: Value| {
            let mut pod = json!({
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": "app"}]},
            });
            let view: PodView = serde_json::from_value(pod.clone()).unwrap();
            let Ok(Decision::Inject(spec)) = spec::parse(&view, &cfg, &Context::default()) else {
                panic!("expected injection");
            };
            json_patch::patch(&mut pod, &build(&view, &spec, &cfg).to_json_patch()).unwrap();
            let volume = pod["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == token_volume(Provider::Vault))
                .unwrap()
                .clone();
            let env = &pod["spec"]["initContainers"][0]["env"];
            let addr = env
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == VAULT_ADDR_ENV)
                .unwrap()["value"]
                .clone();
            (
                volume["projected"]["sources"][0]["serviceAccountToken"]["audience"].clone(),
                addr,
            )
        };
        assert_eq!(
            audience_and_addr(json!({"secret-injector.io/secret-a": "vault:kv/a"})),
            (json!("vault"), json!("https://vault.vault.svc:8200"))
        );
        assert_eq!(
            audience_and_addr(json!({
                "secret-injector.io/secret-a": "vault:kv/a",
                "secret-injector.io/vault-addr": "https://vault-eu.example:8200",
            })),
            (json!("vault-eu"), json!("https://vault-eu.example:8200"))
        );
    }

    #[test]
    fn env_mode_wraps_the_command_and_keeps_args() {
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password"}},
            "spec": {"containers": [{"name": "app", "command": ["/app"], "args": ["--port=1"]}]},
        });
        let (out, _) = run(&pod);
        let app = &out["spec"]["containers"][0];
        assert_eq!(
            app["command"],
            json!([
                EXEC_BINARY,
                "exec",
                format!("--env-file={ENV_FILE}"),
                "--",
                "/app"
            ])
        );
        assert_eq!(app["args"], json!(["--port=1"]));
        let init = &out["spec"]["initContainers"][0];
        assert!(init["args"].to_string().contains("--env-dir"));
    }

    #[test]
    fn env_only_pods_get_no_files_volume_and_room_for_the_binary() {
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-from": "aws:prod/app", "secret-injector.io/aws-role-arn": "arn:aws:iam::123456789012:role/a"}},
            "spec": {"containers": [{"name": "app", "command": ["/app"]}]},
        });
        let (out, _) = run(&pod);
        let vols = out["spec"]["volumes"].to_string();
        assert!(!vols.contains(FILES_VOLUME), "{vols}");
        assert_eq!(out["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "8Mi");
        let args = out["spec"]["initContainers"][0]["args"].to_string();
        assert!(
            !args.contains("--out-dir") && args.contains("--env-dir"),
            "{args}"
        );
    }

    /// `env_delivery: file-key-ref`: one `fileKeyRef` entry per `env-<VAR>`, appended to
    /// the container's env; the command, the mounts and a container without `command`
    /// are left alone. A pod with `env-from` keeps the wrapper, with a warning.
    #[test]
    fn file_key_ref_adds_env_entries_instead_of_wrapping() {
        let cfg = Config {
            env_delivery: EnvDelivery::FileKeyRef,
            ..Config::default()
        };
        let mutate = |pod: &Value| {
            let view: PodView = serde_json::from_value(pod.clone()).unwrap();
            match crate::mutation::mutate(&view, &cfg, &Context::default()) {
                crate::Outcome::Injected { patch, warnings } => {
                    let mut out = pod.clone();
                    json_patch::patch(&mut out, &patch.to_json_patch()).unwrap();
                    (out, warnings)
                }
                other => panic!("{other:?}"),
            }
        };
        let pod = json!({
            "metadata": {"annotations": {
                "secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password",
                "secret-injector.io/env-API_KEY": "vault:kv/api#key",
            }},
            "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "MODE", "value": "prod"}]},
                {"name": "other", "image": "other:1"},
            ]},
        });
        let (out, warnings) = mutate(&pod);
        assert!(warnings.is_empty(), "{warnings:?}");
        let app = &out["spec"]["containers"][0];
        let entry = |name: &str| {
            json!({"name": name, "valueFrom": {"fileKeyRef": {
                "volumeName": ENV_VOLUME, "path": "vars.env", "key": name}}})
        };
        assert_eq!(
            app["env"],
            json!([{"name": "MODE", "value": "prod"}, entry("API_KEY"), entry("DB_PASSWORD")])
        );
        assert!(
            app.get("command").is_none() && app.get("volumeMounts").is_none(),
            "{app}"
        );
        assert_eq!(
            out["spec"]["containers"][1]["env"],
            json!([entry("API_KEY"), entry("DB_PASSWORD")])
        );
        assert_eq!(out["spec"]["volumes"][0]["name"], ENV_VOLUME);
        let init = &out["spec"]["initContainers"][0];
        assert!(init["args"].to_string().contains("--env-dir"), "{init}");
        let plan = init["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == PLAN_ENV)
            .unwrap()["value"]
            .as_str()
            .unwrap();
        assert!(plan.contains(r#""env_delivery":"file-key-ref""#), "{plan}");

        // env-from: names unknown at admission, so the wrapper (and its `command`).
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-from": "vault:kv/app"}},
            "spec": {"containers": [{"name": "app", "command": ["/app"]}]},
        });
        let (out, warnings) = mutate(&pod);
        assert_eq!(out["spec"]["containers"][0]["command"][0], EXEC_BINARY);
        assert!(out["spec"]["containers"][0].get("env").is_none());
        assert!(
            warnings.iter().any(|w| w.contains("exec wrapper")),
            "{warnings:?}"
        );

        // The container's own entry of an injected name is replaced, not shadowed.
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password"}},
            "spec": {"containers": [{"name": "app", "env": [
                {"name": "DB_PASSWORD", "value": "placeholder"},
                {"name": "MODE", "value": "prod"},
            ]}]},
        });
        let (out, _) = mutate(&pod);
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([entry("DB_PASSWORD"), {"name": "MODE", "value": "prod"}])
        );

        // A loader variable keeps the wrapper, which resolves the program before setting it.
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-PATH": "vault:kv/p#path"}},
            "spec": {"containers": [{"name": "app", "command": ["/app"]}]},
        });
        let (out, warnings) = mutate(&pod);
        assert_eq!(out["spec"]["containers"][0]["command"][0], EXEC_BINARY);
        assert!(
            warnings.iter().any(|w| w.contains("env-PATH")),
            "{warnings:?}"
        );

        // `$(VAR)` in args would put the value in argv: a warning names the container.
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password"}},
            "spec": {"containers": [{"name": "app", "args": ["--password=$(DB_PASSWORD)"]}]},
        });
        let (_, warnings) = mutate(&pod);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`app` uses $(DB_PASSWORD)")),
            "{warnings:?}"
        );

        // `secret-injector.io/command` has nothing to do without the wrapper.
        let pod = json!({
            "metadata": {"annotations": {
                "secret-injector.io/env-A": "vault:kv/a#k",
                "secret-injector.io/command": "[\"/app\"]",
            }},
            "spec": {"containers": [{"name": "app"}]},
        });
        let (out, warnings) = mutate(&pod);
        assert!(out["spec"]["containers"][0].get("command").is_none());
        let ignored = "command is not used with env_delivery file-key-ref";
        assert!(warnings.iter().any(|w| w.contains(ignored)), "{warnings:?}");
    }

    #[test]
    fn warns_when_aws_has_no_visible_identity() {
        let with = |ann: Value| {
            let view: PodView = serde_json::from_value(json!({
                "metadata": {"annotations": ann},
                "spec": {"containers": [{"name": "app"}]},
            }))
            .unwrap();
            match crate::mutation::mutate(&view, &Config::default(), &Context::default()) {
                crate::Outcome::Injected { warnings, .. } => warnings,
                other => panic!("{other:?}"),
            }
        };
        let w = with(json!({"secret-injector.io/secret-a": "aws:prod/a"}));
        assert!(w.iter().any(|w| w.contains("default chain")), "{w:?}");
        let w = with(
            json!({"secret-injector.io/secret-a": "aws:prod/a", "secret-injector.io/aws-role-arn": "arn:aws:iam::123456789012:role/a"}),
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn copies_eks_web_identity_from_the_app() {
        let pod = json!({
            "metadata": {"annotations": {"secret-injector.io/secret-a": "aws:prod/a#k"}},
            "spec": {"containers": [{
                "name": "app",
                "env": [
                    {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/app"},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
                    {"name": "OTHER", "value": "x"},
                    {"name": "AWS_REGION", "value": "eu-west-1"},
                ],
                "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}],
            }], "volumes": [{"name": "aws-iam-token", "projected": {"sources": []}}]},
        });
        let (out, _) = run(&pod);
        let init = &out["spec"]["initContainers"][0];
        let text = init.to_string();
        assert!(text.contains("arn:aws:iam::123456789012:role/app"));
        assert!(text.contains("aws-iam-token"));
        assert!(!text.contains("OTHER"));
        assert!(text.contains("eu-west-1"), "the app's region: {text}");
        assert!(
            !out["spec"]["volumes"]
                .to_string()
                .contains("secret-injector-token-aws")
        );
    }

    /// With a refresh interval the injected container is a native sidecar: first of the
    /// init containers, `restartPolicy: Always`, held ready by its startup probe, with
    /// the same identity, volumes and plan as the init container it replaces.
    #[test]
    fn refresh_interval_makes_a_native_sidecar() {
        let pod = json!({
            "metadata": {"name": "job", "annotations": {
                "secret-injector.io/secret-db": "vault:database/creds/app",
                "secret-injector.io/refresh-interval": "5m",
            }},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "app"}]},
        });
        let (out, _) = run(&pod);
        let sidecar = &out["spec"]["initContainers"][0];
        assert_eq!(sidecar["name"], REFRESH_CONTAINER);
        assert_eq!(sidecar["restartPolicy"], "Always");
        assert_eq!(sidecar["args"][0], "refresh");
        assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(sidecar["startupProbe"]["httpGet"]["port"], PROBE_PORT);
        assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
        let env = sidecar["env"].to_string();
        assert!(
            env.contains(&format!(
                r#"{{"name":"{REFRESH_INTERVAL_ENV}","value":"5m"}}"#
            )),
            "{env}"
        );
        assert!(env.contains(VAULT_TOKEN_FILE_ENV), "{env}");
        assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 1);
        // without the annotation: the plain init container, which exits
        let mut plain = pod.clone();
        plain["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("secret-injector.io/refresh-interval");
        let (out, _) = run(&plain);
        let init = &out["spec"]["initContainers"][0];
        assert_eq!(init["name"], INIT_CONTAINER);
        assert!(init.get("restartPolicy").is_none() && init.get("startupProbe").is_none());
    }
}
