//! Pod annotations -> a validated [`InjectionSpec`] (SPEC sections 1-6).
//!
//! Pure: no I/O. Every message a user can get back from admission is written here, and
//! each names the annotation, says what is wrong and shows a valid example. All problems
//! of a pod are collected and reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::mutation::pod::{ContainerView, PodView};
use contract::envfile::is_loader_variable;
use contract::names::ENV_MOUNT_PATH;
use contract::plan::{EnvDelivery, FetchPlan};
use contract::reference::{self, closest};
use contract::render;

mod checks;
mod containers;
mod identity;

use checks::*;
use containers::*;
pub use containers::{app_user, container, default_file_mode};
use identity::*;

/// Every annotation of ours starts with this.
pub const PREFIX: &str = "secret-injector.io/";
/// Set by the webhook once a pod is injected.
pub const STATUS: &str = "secret-injector.io/status";
pub const STATUS_INJECTED: &str = "injected";
/// Set by the kubelet on the API object of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Why the webhook leaves a pod as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No annotation of ours.
    NoAnnotations,
    /// A static pod's mirror, which asked for secrets it cannot get.
    Mirror,
    AlreadyInjected,
    AlreadyHasOurContainer,
    OptedOut,
    /// Annotations of ours, but none that declares a secret.
    NothingToInject,
}

impl Skip {
    /// The reason, for the review's log line.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NoAnnotations => "no secret-injector.io/ annotations",
            Skip::Mirror => {
                "a mirror pod of a static pod: the kubelet runs the manifest on its disk, not this object"
            }
            Skip::AlreadyInjected => "already injected",
            Skip::AlreadyHasOurContainer => {
                "already has the secret-injector-init or -refresh container"
            }
            Skip::OptedOut => "secret-injector.io/inject is false",
            Skip::NothingToInject => "no secret-, template- or env- annotation: nothing to inject",
        }
    }

    /// Worth a line at info: the pod asked for secrets it will not get. The others are
    /// logged at debug.
    pub fn is_notable(self) -> bool {
        self == Skip::Mirror
    }
}

/// Containers of well-known meshes that never get secrets unless named explicitly.
const MESH_SIDECARS: &[&str] = &["istio-proxy", "linkerd-proxy", "linkerd-init", "istio-init"];

const EXACT_KEYS: &[&str] = &[
    "inject",
    "status",
    "mount-path",
    "containers",
    "command",
    "refresh-interval",
    "reload-url",
    "env-from",
    "env-from-allow",
    "vault-role",
    "vault-auth-path",
    "vault-auth-method",
    "vault-addr",
    "aws-region",
    "aws-role-arn",
    "gcp-project",
    "gcp-service-account",
    "azure-client-id",
    "azure-tenant-id",
];

const PREFIX_KEYS: &[&str] = &["secret-", "template-", "file-mode-", "env-"];

/// What Kubernetes accepts for all of an object's annotations together (keys and
/// values). The API server checks it only after the mutating webhooks have run, so a
/// review can carry more: it is refused before any other work.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
/// Longest name part of an annotation key (after `secret-injector.io/`).
const MAX_KEY_NAME: usize = 63;
/// "Did you mean" suggestions are computed for this many problems at most: as many as
/// a denial message shows.
const MAX_SUGGESTIONS: usize = 30;
/// Problems kept for one pod; beyond, they are only counted.
const MAX_PROBLEMS: usize = 100;
/// Containers (app and init) of a pod this webhook handles, and env entries, volume
/// mounts and volumes of all of them together. Kubernetes sets no count, but the work of
/// one review must be bounded whatever the request holds.
pub const MAX_CONTAINERS: usize = 128;
pub const MAX_POD_ENTRIES: usize = 16_384;
/// Longest `mount-path`.
const MAX_PATH: usize = 1024;

/// One problem with one annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub annotation: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.annotation, self.message)
    }
}

/// All problems of a pod, rendered as one denial message: those kept, and how many more
/// were found but not kept (see [`MAX_PROBLEMS`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>, pub usize);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.len() + self.1;
        match self.0.as_slice() {
            // No program name: kubectl names the webhook, and inject -f the object.
            [one] if total == 1 => write!(f, "{one}"),
            many => {
                write!(f, "{total} problems with the pod's annotations:")?;
                // A bounded answer however hostile the input.
                const SHOWN: usize = 30;
                for p in many.iter().take(SHOWN) {
                    write!(f, "\n- {p}")?;
                }
                if total > SHOWN {
                    write!(f, "\n- … and {} more", total - SHOWN)?;
                }
                Ok(())
            }
        }
    }
}

/// What the webhook decided for a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Leave the pod as it is; the reason is logged.
    Skip(Skip),
    Inject(Box<InjectionSpec>),
}

/// A container selected to receive the secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub init: bool,
    pub index: usize,
    pub name: String,
}

/// The IRSA role of a ServiceAccount.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The Azure Workload Identity client of a ServiceAccount.
pub const AZURE_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// The Azure Workload Identity tenant of a ServiceAccount.
pub const AZURE_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
/// The ServiceAccount annotations admission reads.
pub const SERVICE_ACCOUNT_ANNOTATIONS: [&str; 3] = [
    ROLE_ARN_ANNOTATION,
    AZURE_CLIENT_ID_ANNOTATION,
    AZURE_TENANT_ID_ANNOTATION,
];

impl Context {
    /// The facts a ServiceAccount's annotations give (`get` looks one up).
    pub fn from_service_account<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Context {
        let read = |name: &str| get(name).map(str::to_string);
        Context {
            service_account_role_arn: read(ROLE_ARN_ANNOTATION),
            azure_client_id: read(AZURE_CLIENT_ID_ANNOTATION),
            azure_tenant_id: read(AZURE_TENANT_ID_ANNOTATION),
        }
    }
}

/// Facts from outside the pod that the spec depends on (resolved at the edges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `eks.amazonaws.com/role-arn` of the pod's service account, when known.
    pub service_account_role_arn: Option<String>,
    /// `azure.workload.identity/client-id` of the pod's service account, when known.
    pub azure_client_id: Option<String>,
    /// `azure.workload.identity/tenant-id` of the pod's service account, when known.
    pub azure_tenant_id: Option<String>,
}

/// How the injected containers authenticate to Vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultIdentity {
    pub address: String,
    /// Audience of the projected token: the one of `address` in the config
    /// (`vault.allowed_addresses`), else `vault.audience`.
    pub audience: String,
    pub role: String,
    pub auth_path: String,
    pub auth_method: contract::auth::AuthMethod,
}

/// How the injected containers authenticate to AWS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsIdentity {
    pub region: String,
    /// Role to assume with the pod's web-identity token; `None` leaves the SDK's
    /// default chain (EKS Pod Identity, or web identity copied from the app containers).
    pub role_arn: Option<String>,
    /// The role came from `secret-injector.io/aws-role-arn` (it then wins over the
    /// web identity an EKS webhook gave the app containers).
    pub explicit: bool,
    /// The region came from `secret-injector.io/aws-region` (it then wins over the
    /// app container's AWS_REGION).
    pub region_explicit: bool,
}

/// Everything the patch needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectionSpec {
    pub plan: FetchPlan,
    pub mount_path: String,
    /// Containers that get the secrets volume (file mode) or the wrapped command (env mode).
    pub targets: Vec<Target>,
    /// Entrypoint for env-mode containers that declare none.
    pub command: Option<Vec<String>>,
    pub refresh_interval: Option<Duration>,
    /// `reload-url`: POSTed by the refresh sidecar after the files changed.
    pub reload_url: Option<String>,
    pub vault: VaultIdentity,
    pub aws: AwsIdentity,
    /// With `gcp:` references.
    pub gcp: Option<contract::cloud::GcpSettings>,
    /// With `azure:` references.
    pub azure: Option<contract::cloud::AzureSettings>,
    /// Advice that does not block admission (sent as admission warnings).
    pub warnings: Vec<String>,
}

fn key(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

struct Collector {
    problems: Vec<Problem>,
    /// Problems past [`MAX_PROBLEMS`], counted only.
    omitted: usize,
}

impl Collector {
    /// Whether a suggestion is still worth its cost (see [`MAX_SUGGESTIONS`]).
    fn may_suggest(&self) -> bool {
        self.problems.len() < MAX_SUGGESTIONS
    }

    fn push(&mut self, suffix: &str, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.omitted += 1;
            return;
        }
        // Names and values come from the request: no control or bidi character
        // reaches the denial as it is.
        self.problems.push(Problem {
            annotation: contract::text::escape_invisible(&key(suffix)),
            message: bounded(contract::text::escape_invisible(&message.into())),
        });
    }

    fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// "Did you mean": the closest candidate, while suggestions are still worth their cost.
    fn suggest<'a>(
        &self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        if self.may_suggest() {
            closest(word, candidates)
        } else {
            None
        }
    }

    fn into_problems(self) -> Problems {
        Problems(self.problems, self.omitted)
    }
}

/// Longest message about one annotation, in characters.
const MAX_MESSAGE: usize = 600;

/// A message cut to [`MAX_MESSAGE`] characters: its start (which names what is wrong)
/// and its end (the fix and the example) are kept, and a value quoted in between is
/// cut, so a megabyte annotation does not come back as a megabyte denial.
fn bounded(message: String) -> String {
    let chars = message.chars().count();
    if chars <= MAX_MESSAGE {
        return message;
    }
    let head: String = message.chars().take(MAX_MESSAGE / 2).collect();
    let tail: String = message.chars().skip(chars - MAX_MESSAGE / 3).collect();
    format!("{head}…({chars} characters, cut)…{tail}")
}

/// Refuse a pod too large for one review to be cheap (see [`MAX_CONTAINERS`]).
fn check_pod_size(pod: &PodView) -> Result<(), Problems> {
    let all = || pod.containers().iter().chain(pod.init_containers());
    let containers = all().count();
    let entries: usize = pod.volumes().len()
        + all()
            .map(|ct| {
                ct.env.as_ref().map_or(0, Vec::len) + ct.volume_mounts.as_ref().map_or(0, Vec::len)
            })
            .sum::<usize>();
    let message = if containers > MAX_CONTAINERS {
        format!(
            "the pod has {containers} containers; this webhook handles pods with at most {MAX_CONTAINERS} (app and init together)"
        )
    } else if entries > MAX_POD_ENTRIES {
        format!(
            "the pod has {entries} env entries, volume mounts and volumes; this webhook handles at most {MAX_POD_ENTRIES}"
        )
    } else {
        return Ok(());
    };
    Err(Problems(
        vec![Problem {
            annotation: key("*"),
            message: format!(
                "{message}; remove the secret-injector.io/ annotations from this pod or make it smaller"
            ),
        }],
        0,
    ))
}

/// Read the pod's annotations and decide. Pure.
pub fn parse(pod: &PodView, config: &Config, ctx: &Context) -> Result<Decision, Problems> {
    let annotations = pod.annotations();
    let ours: BTreeMap<&str, &str> = annotations
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|s| (s, v.as_str())))
        .collect();
    if ours.is_empty() {
        return Ok(Decision::Skip(Skip::NoAnnotations));
    }
    let mut c = Collector {
        problems: Vec::new(),
        omitted: 0,
    };
    if let Some(reason) = opt_out(&mut c, pod, &ours) {
        return Ok(Decision::Skip(reason));
    }
    // Bounds on the whole review, before any per-annotation work (and after the
    // cheap opt-outs above, which a pod of any size may use).
    check_annotation_size(annotations)?;
    check_pod_size(pod)?;

    let mut warnings = Vec::new();
    let (mut plan, modes) = read_references(&mut c, &ours);
    if let Some(list) = ours.get("env-from-allow") {
        plan.env_from_allow = parse_env_from_allow(&mut c, &mut warnings, list, &plan);
    }
    check_duplicates(&mut c, &plan);
    choose_env_delivery(&mut warnings, config, pod, &ours, &mut plan);
    // Templates: syntax and names, against every declared secret; every problem of
    // each template, one line each.
    let declared: BTreeSet<String> = plan.secrets.keys().cloned().collect();
    for (name, src) in &plan.templates {
        if let Err(problems) = check_template(name, src, &declared) {
            for m in problems {
                c.push(&format!("template-{name}"), m);
            }
        }
    }

    // Which containers, where, and how they start.
    let targets = select_targets(&mut c, pod, ours.get("containers").copied());
    apply_file_modes(&mut c, &mut plan, pod, &targets, modes);
    let mount_path = match ours.get("mount-path") {
        Some(p) => check_mount_path(&mut c, p),
        None => config.mount_path.clone(),
    };
    let command = parse_command(&mut c, &ours);
    let has_files = declares_files(&ours, &plan);
    if has_files {
        check_mount_collisions(&mut c, pod, &targets, &mount_path, "mount-path");
    }
    let placement = Placement {
        pod,
        targets: &targets,
        mount_path: has_files.then_some(mount_path.as_str()),
        command: command.as_ref(),
    };
    env_checks(&mut c, &mut warnings, &ours, &plan, &placement);
    let (refresh_interval, reload_url) = refresh(&mut c, &mut warnings, pod, &ours, &plan);
    let vault = vault_identity(&mut c, pod, config, &ours);
    let aws = aws_identity(&mut c, config, ctx, &ours);
    let gcp = gcp_identity(&mut c, config, &ours, &plan);
    let azure = azure_identity(&mut c, config, ctx, &ours, &plan);
    check_reserved_names(&mut c, pod);

    if !c.is_empty() {
        return Err(c.into_problems());
    }
    if !has_files && !plan.env_mode() {
        return Ok(Decision::Skip(Skip::NothingToInject));
    }
    Ok(Decision::Inject(Box::new(InjectionSpec {
        plan,
        mount_path,
        targets,
        command,
        refresh_interval,
        reload_url,
        vault,
        aws,
        gcp,
        azure,
        warnings: warnings
            .into_iter()
            .map(|w| bounded(contract::text::escape_invisible(&w)))
            .collect(),
    })))
}

/// `refresh-interval` and `reload-url`.
fn refresh(
    c: &mut Collector,
    warnings: &mut Vec<String>,
    pod: &PodView,
    ours: &BTreeMap<&str, &str>,
    plan: &FetchPlan,
) -> (Option<Duration>, Option<String>) {
    let interval = ours
        .get("refresh-interval")
        .and_then(|raw| parse_interval(c, raw));
    if interval.is_some() {
        check_probe_port(c, pod);
    }
    let reload_url = ours
        .get("reload-url")
        .and_then(|raw| parse_reload_url(c, raw, interval.is_some()));
    if interval.is_some() && plan.env_mode() {
        warnings.push(
            "secret-injector.io/refresh-interval: env-mode variables are read once, when the app starts; the refresh sidecar keeps files current and renews leases, but a running process keeps the variables it started with".to_string(),
        );
    }
    (interval, reload_url)
}

/// Files by the annotations, not only by the references that parsed: a broken reference
/// must not hide the other file-mode problems (a mount-path collision).
fn declares_files(ours: &BTreeMap<&str, &str>, plan: &FetchPlan) -> bool {
    !plan.files.is_empty()
        || ours
            .keys()
            .any(|k| k.starts_with("secret-") || k.starts_with("template-"))
}

/// Env mode by the annotations, likewise: a broken reference must not hide the other
/// env-mode problems (a missing `command`).
fn declares_env(ours: &BTreeMap<&str, &str>, plan: &FetchPlan) -> bool {
    plan.env_mode()
        || ours
            .keys()
            .any(|k| k.starts_with("env-") && *k != "env-from-allow")
}

/// The non-empty, trimmed items of a comma-separated annotation value.
fn comma_list(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `status`, an existing init container and `inject: "false"`: the reasons to leave a
/// pod alone (a bad value of `status` or `inject` is a problem instead).
fn opt_out(c: &mut Collector, pod: &PodView, ours: &BTreeMap<&str, &str>) -> Option<Skip> {
    // The kubelet runs a static pod from the manifest on its disk; the API server only
    // gets a mirror of it. A patched mirror would claim secrets the pod never gets.
    if pod.annotations().contains_key(MIRROR_ANNOTATION) {
        return Some(Skip::Mirror);
    }
    match ours.get("status").copied() {
        Some(STATUS_INJECTED) => return Some(Skip::AlreadyInjected),
        Some(other) => c.push(
            "status",
            format!(
                "`{other}` is not a value this webhook sets; the webhook writes `{STATUS_INJECTED}` itself, remove the annotation"
            ),
        ),
        None => {}
    }
    if pod.init_containers().iter().any(|ic| {
        ic.name == contract::names::INIT_CONTAINER || ic.name == contract::names::REFRESH_CONTAINER
    }) {
        return Some(Skip::AlreadyHasOurContainer);
    }
    match ours.get("inject").copied() {
        Some("false") => return Some(Skip::OptedOut),
        Some("true") | None => {}
        Some(other) => c.push(
            "inject",
            format!(
                "`{other}` is not `true` or `false`; write secret-injector.io/inject: \"false\" to skip this pod"
            ),
        ),
    }
    None
}

fn check_annotation_size(annotations: &BTreeMap<String, String>) -> Result<(), Problems> {
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total <= MAX_ANNOTATION_BYTES {
        return Ok(());
    }
    Err(Problems(
        vec![Problem {
            annotation: key("*"),
            message: format!(
                "the pod's annotations total {total} bytes; Kubernetes accepts at most {MAX_ANNOTATION_BYTES} (256 KiB) for all annotations together, so the pod would be refused anyway; shorten them"
            ),
        }],
        0,
    ))
}

/// The `secret-`, `template-`, `env-` and `env-from` annotations into a plan (files
/// without their modes yet), and the raw `file-mode-` values by file name.
fn read_references<'a>(
    c: &mut Collector,
    ours: &BTreeMap<&'a str, &'a str>,
) -> (FetchPlan, BTreeMap<&'a str, &'a str>) {
    let mut plan = FetchPlan::default();
    let mut modes: BTreeMap<&str, &str> = BTreeMap::new();
    for (&suffix, &value) in ours {
        if EXACT_KEYS.contains(&suffix) {
            continue;
        }
        if let Some(name) = suffix.strip_prefix("secret-") {
            if check_file_name(c, suffix, name) {
                match reference::parse(value) {
                    Ok(r) => {
                        plan.secrets.insert(name.to_string(), r);
                    }
                    Err(e) => c.push(suffix, e.0),
                }
            }
        } else if let Some(name) = suffix.strip_prefix("template-") {
            if check_file_name(c, suffix, name) {
                plan.templates.insert(name.to_string(), value.to_string());
            }
        } else if let Some(name) = suffix.strip_prefix("file-mode-") {
            modes.insert(name, value);
        } else if let Some(var) = suffix.strip_prefix("env-") {
            if check_env_name(c, suffix, var) {
                match reference::parse(value) {
                    Ok(r) => {
                        plan.env.insert(var.to_string(), r);
                    }
                    Err(e) => c.push(suffix, e.0),
                }
            }
        } else {
            unknown_key(c, suffix);
        }
    }
    if let Some(list) = ours.get("env-from") {
        plan.env_from = parse_env_from(c, list);
    }
    (plan, modes)
}

fn parse_env_from(c: &mut Collector, list: &str) -> Vec<reference::SecretRef> {
    let items = comma_list(list);
    if items.is_empty() {
        c.push(
            "env-from",
            "is empty; list one or more references separated by commas, for example aws:deparrow/production/secrets",
        );
    }
    let mut refs = Vec::new();
    for item in items {
        match reference::parse(item) {
            Ok(r) if r.key.is_some() => c.push(
                "env-from",
                format!(
                    "`{item}` picks one key with `#`; env-from loads every key of a secret, so drop `#{}` (or use secret-injector.io/env-<VAR> for a single key)",
                    r.key.unwrap_or_default()
                ),
            ),
            Ok(r) => refs.push(r),
            Err(e) => c.push("env-from", e.0),
        }
    }
    refs
}

/// Every declared file with the default mode, then the `file-mode-<name>` overrides.
fn apply_file_modes(
    c: &mut Collector,
    plan: &mut FetchPlan,
    pod: &PodView,
    targets: &[Target],
    modes: BTreeMap<&str, &str>,
) {
    let default_mode = default_file_mode(pod, targets);
    plan.default_mode = default_mode;
    for name in plan.secrets.keys().chain(plan.templates.keys()) {
        plan.files.insert(name.clone(), default_mode);
    }
    for (name, raw) in modes {
        let suffix = format!("file-mode-{name}");
        if !plan.files.contains_key(name) {
            let hint = c
                .suggest(name, plan.files.keys().map(String::as_str))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            c.push(
                &suffix,
                format!(
                    "there is no file `{name}`{hint}: declare secret-injector.io/secret-{name} or secret-injector.io/template-{name}, or remove this annotation"
                ),
            );
            continue;
        }
        match parse_mode(raw) {
            Ok(mode) => {
                plan.files.insert(name.to_string(), mode);
            }
            Err(m) => c.push(&suffix, m),
        }
    }
}

fn parse_command(c: &mut Collector, ours: &BTreeMap<&str, &str>) -> Option<Vec<String>> {
    let raw = ours.get("command")?;
    match serde_json::from_str::<Vec<String>>(raw) {
        Ok(cmd) if !cmd.is_empty() && !cmd[0].is_empty() => Some(cmd),
        _ => {
            c.push(
                "command",
                format!(
                    "`{raw}` is not a non-empty JSON array of strings; for example secret-injector.io/command: '[\"/app/server\", \"--port=8080\"]'"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::reference::Provider;
    use serde_json::json;

    fn pod(annotations: serde_json::Value, spec: serde_json::Value) -> PodView {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap()
    }

    fn one_app() -> serde_json::Value {
        json!({"containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]})
    }

    fn inject(annotations: serde_json::Value) -> InjectionSpec {
        match parse(
            &pod(annotations, one_app()),
            &Config::default(),
            &Context::default(),
        ) {
            Ok(Decision::Inject(s)) => *s,
            other => panic!("expected injection, got {other:?}"),
        }
    }

    /// A huge value is quoted by a bounded prefix: the denial names the annotation and
    /// still ends with the fix.
    #[test]
    fn denials_quote_a_bounded_prefix_of_huge_values() {
        // Large, within Kubernetes' 256 KiB for all annotations together.
        let huge = "x".repeat(60_000);
        let ps = problems(
            json!({
                "secret-injector.io/secret-a": format!("vault:/{huge}"),
                "secret-injector.io/vault-role": format!("{huge}!"),
                "secret-injector.io/secret-b": format!("azure:https://{huge}.com/secrets/x"),
            }),
            one_app(),
        );
        assert_eq!(ps.len(), 3, "{ps:?}");
        for p in &ps {
            let text = p.to_string();
            assert!(text.chars().count() < 800, "{} characters", text.len());
            assert!(text.contains("characters, cut)"), "{text}");
        }
        let role = ps
            .iter()
            .find(|p| p.annotation.ends_with("vault-role"))
            .unwrap();
        assert!(
            role.message
                .ends_with("for example secret-injector.io/vault-role: app"),
            "{role}"
        );
        let total = Problems(ps, 0).to_string();
        assert!(total.len() < 3_000, "{}", total.len());
    }

    #[test]
    fn size_bounds_apply_to_pods_that_ask_for_injection_only() {
        let many: Vec<serde_json::Value> =
            (0..200).map(|i| json!({"name": format!("c{i}")})).collect();
        let spec = json!({ "containers": many });
        let decide = |annotations| {
            parse(
                &pod(annotations, spec.clone()),
                &Config::default(),
                &Context::default(),
            )
        };
        assert!(matches!(decide(json!({})), Ok(Decision::Skip(_))));
        assert!(matches!(
            decide(
                json!({"secret-injector.io/inject": "false", "secret-injector.io/secret-a": "vault:kv/a"})
            ),
            Ok(Decision::Skip(_))
        ));
        let ps = problems(
            json!({"secret-injector.io/secret-a": "vault:kv/a"}),
            spec.clone(),
        );
        assert!(ps[0].message.contains("200 containers"), "{ps:?}");
    }

    fn problems(annotations: serde_json::Value, spec: serde_json::Value) -> Vec<Problem> {
        match parse(
            &pod(annotations, spec),
            &Config::default(),
            &Context::default(),
        ) {
            Err(p) => p.0,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn one_problem(annotations: serde_json::Value) -> Problem {
        let mut p = problems(annotations, one_app());
        assert_eq!(p.len(), 1, "{p:?}");
        p.remove(0)
    }

    #[test]
    fn skips_pods_without_our_annotations_or_opted_out_or_done() {
        let cfg = Config::default();
        let ctx = Context::default();
        let plain = pod(json!({"other.io/x": "1"}), one_app());
        assert_eq!(
            parse(&plain, &cfg, &ctx),
            Ok(Decision::Skip(Skip::NoAnnotations))
        );
        let off = pod(
            json!({"secret-injector.io/inject": "false", "secret-injector.io/secret-a": "vault:x/y"}),
            one_app(),
        );
        assert!(matches!(parse(&off, &cfg, &ctx), Ok(Decision::Skip(_))));
        let done = pod(
            json!({"secret-injector.io/status": "injected", "secret-injector.io/secret-a": "bad"}),
            one_app(),
        );
        assert_eq!(
            parse(&done, &cfg, &ctx),
            Ok(Decision::Skip(Skip::AlreadyInjected))
        );
        let nothing = pod(json!({"secret-injector.io/vault-role": "app"}), one_app());
        assert!(matches!(parse(&nothing, &cfg, &ctx), Ok(Decision::Skip(_))));
    }

    #[test]
    fn builds_a_plan_with_defaults() {
        let s = inject(json!({
            "secret-injector.io/secret-db-password": "vault:secret/data/prod/db#password",
            "secret-injector.io/secret-pgpass": "aws:prod/cnpg/postgres-credentials",
            "secret-injector.io/template-pgpass": "h:5432:app:{{ .username }}:{{ .password }}",
            "secret-injector.io/file-mode-pgpass": "0440",
        }));
        assert_eq!(s.mount_path, "/secrets");
        assert_eq!(
            s.plan.files["db-password"], 0o444,
            "no runAsUser: readable by the image's user"
        );
        assert_eq!(s.plan.files["pgpass"], 0o440);
        assert_eq!(
            s.targets,
            vec![Target {
                init: false,
                index: 0,
                name: "app".into()
            }]
        );
        assert_eq!(s.vault.role, "default");
        assert_eq!(s.vault.address, "https://vault.vault.svc:8200");
        assert_eq!(s.aws.region, "us-east-1");
        assert!(s.plan.uses(Provider::Vault) && s.plan.uses(Provider::Aws));
    }

    #[test]
    fn default_mode_is_owner_only_when_the_user_is_known() {
        let p = pod(
            json!({"secret-injector.io/secret-a": "vault:kv/a"}),
            json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "app"}, {"name": "b"}]}),
        );
        let Ok(Decision::Inject(s)) = parse(&p, &Config::default(), &Context::default()) else {
            panic!()
        };
        assert_eq!(s.plan.files["a"], 0o400);
        assert_eq!(app_user(&p, &s.targets), Some((1000, None)));
        let g = pod(
            json!({"secret-injector.io/secret-a": "vault:kv/a"}),
            json!({"securityContext": {"fsGroup": 2000}, "containers": [{"name": "app"}]}),
        );
        let Ok(Decision::Inject(s)) = parse(&g, &Config::default(), &Context::default()) else {
            panic!()
        };
        assert_eq!(s.plan.files["a"], 0o440, "fsGroup only: group-readable");
    }

    #[test]
    fn unknown_provider_empty_path_bad_params() {
        let p = one_problem(json!({"secret-injector.io/secret-db": "vualt:secret/x"}));
        assert_eq!(p.annotation, "secret-injector.io/secret-db");
        assert!(p.message.contains("did you mean `vault`"), "{}", p.message);
        let p = one_problem(json!({"secret-injector.io/secret-db": "aws:"}));
        assert!(p.message.contains("path is empty"));
        let p = one_problem(json!({"secret-injector.io/secret-db": "vault:kv/x?version=x"}));
        assert!(p.message.contains("positive whole number"));
    }

    #[test]
    fn bad_names_and_duplicates() {
        let p = one_problem(json!({"secret-injector.io/secret-a/b": "vault:kv/x"}));
        assert!(p.message.contains("may only use"), "{}", p.message);
        let p = one_problem(json!({"secret-injector.io/secret-..": "vault:kv/x"}));
        assert!(p.message.contains("reserved"));
        let long = format!("secret-injector.io/secret-{}", "a".repeat(57));
        let p = one_problem(json!({ long: "vault:kv/x" }));
        assert!(p.message.contains("at most 56"));
        let p = one_problem(
            json!({"secret-injector.io/secret-DB": "vault:kv/x", "secret-injector.io/secret-db": "vault:kv/y"}),
        );
        assert!(p.message.contains("duplicates"), "{}", p.message);
        let p = one_problem(json!({"secret-injector.io/env-1BAD": "vault:kv/x"}));
        assert!(p.message.contains("not an environment variable name"));
    }

    #[test]
    fn bad_file_modes() {
        for (mode, want) in [
            ("777", "writable"),
            ("0999", "octal"),
            ("0000", "nobody"),
            ("rw", "octal"),
        ] {
            let p = one_problem(
                json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/file-mode-a": mode}),
            );
            assert_eq!(p.annotation, "secret-injector.io/file-mode-a");
            assert!(p.message.contains(want), "{mode}: {}", p.message);
        }
        let p = one_problem(
            json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/file-mode-b": "0400"}),
        );
        assert!(p.message.contains("there is no file `b`"), "{}", p.message);
    }

    #[test]
    fn mount_path_must_be_absolute_and_not_collide() {
        let p = one_problem(
            json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/mount-path": "secrets"}),
        );
        assert!(p.message.contains("relative"));
        let spec = json!({"containers": [{"name": "app", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}]});
        let ps = problems(
            json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/mount-path": "/etc/app/secrets"}),
            spec,
        );
        assert_eq!(ps.len(), 1);
        assert!(
            ps[0]
                .message
                .contains("collides with the mount of volume `cfg`"),
            "{}",
            ps[0].message
        );
    }

    #[test]
    fn containers_must_exist() {
        let p = one_problem(
            json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/containers": "ap"}),
        );
        assert!(
            p.message
                .contains("no container `ap` (did you mean `app`?)"),
            "{}",
            p.message
        );
    }

    #[test]
    fn env_mode_needs_a_command() {
        let spec = json!({"containers": [{"name": "app", "args": ["--port=1"]}]});
        let ps = problems(
            json!({"secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password"}),
            spec.clone(),
        );
        assert_eq!(ps[0].annotation, "secret-injector.io/env-DB_PASSWORD");
        assert!(
            ps[0].message.contains("has no `command`"),
            "{}",
            ps[0].message
        );
        let ok = parse(
            &pod(
                json!({"secret-injector.io/env-from": "aws:deparrow/production/secrets", "secret-injector.io/command": "[\"/app/api\"]"}),
                spec,
            ),
            &Config::default(),
            &Context::default(),
        );
        assert!(matches!(ok, Ok(Decision::Inject(_))), "{ok:?}");
        let p = one_problem(json!({"secret-injector.io/env-from": "aws:x#k"}));
        assert!(p.message.contains("drop `#k`"));
    }

    #[test]
    fn env_from_allow_names_loader_variables() {
        let s = inject(json!({
            "secret-injector.io/env-from": "aws:team/app",
            "secret-injector.io/env-from-allow": " LD_LIBRARY_PATH, NODE_OPTIONS,,",
        }));
        assert_eq!(
            s.plan.env_from_allow,
            BTreeSet::from(["LD_LIBRARY_PATH".to_string(), "NODE_OPTIONS".to_string()])
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // carried to init in the plan, and absent when unused
        let plan = serde_json::to_value(&s.plan).unwrap();
        assert_eq!(
            plan["env_from_allow"],
            json!(["LD_LIBRARY_PATH", "NODE_OPTIONS"])
        );
        let plain = inject(json!({"secret-injector.io/env-from": "aws:team/app"}));
        assert!(serde_json::to_value(&plain.plan).unwrap()["env_from_allow"].is_null());

        let p = one_problem(json!({
            "secret-injector.io/env-from": "aws:team/app",
            "secret-injector.io/env-from-allow": "LD_PRELOAD,LD-AUDIT",
        }));
        assert_eq!(p.annotation, "secret-injector.io/env-from-allow");
        assert!(
            p.message
                .contains("`LD-AUDIT` is not an environment variable name")
                && p.message
                    .contains("secret-injector.io/env-from-allow: LD_LIBRARY_PATH,NODE_OPTIONS"),
            "{}",
            p.message
        );
        let p = one_problem(json!({
            "secret-injector.io/env-from": "aws:team/app",
            "secret-injector.io/env-from-allow": " , ",
        }));
        assert!(p.message.starts_with("is empty"), "{}", p.message);

        // without env-from it changes nothing: a warning, not a denial
        let s = inject(json!({
            "secret-injector.io/env-DB": "aws:team/app#db",
            "secret-injector.io/env-from-allow": "LD_PRELOAD",
        }));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("env-from-allow only applies")),
            "{:?}",
            s.warnings
        );
        // a variable that needs no allowing: warned
        let s = inject(json!({
            "secret-injector.io/env-from": "aws:team/app",
            "secret-injector.io/env-from-allow": "DB_PASSWORD,PATH",
        }));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("lists DB_PASSWORD, which")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn env_mode_collisions_name_the_env_annotation() {
        let spec = json!({"containers": [{"name": "app", "command": ["/app"], "volumeMounts": [{"name": "x", "mountPath": "/secret-injector"}]}]});
        let ps = problems(
            json!({"secret-injector.io/env-DB_PASSWORD": "vault:kv/db#password"}),
            spec,
        );
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0].annotation, "secret-injector.io/env-DB_PASSWORD");
        assert!(
            ps[0]
                .message
                .contains("env mode mounts its volume at /secret-injector"),
            "{}",
            ps[0].message
        );
    }

    #[test]
    fn reserved_volume_names_and_refresh_warning() {
        let spec = json!({"containers": [{"name": "app"}], "volumes": [{"name": "secret-injector-files"}]});
        let ps = problems(json!({"secret-injector.io/secret-a": "vault:kv/a"}), spec);
        assert!(ps[0].message.contains("reserved"), "{ps:?}");
        // Mounting a reserved volume without declaring it would attach the webhook's
        // token or env volume to a container it did not select: refused too.
        for (field, volume) in [
            ("containers", "secret-injector-token-vault"),
            ("containers", "secret-injector-env"),
            ("initContainers", "secret-injector-token-aws"),
        ] {
            let mut spec = json!({"containers": [{"name": "app"}, {"name": "sidecar"}]});
            let mount = json!([{"name": volume, "mountPath": "/steal"}]);
            if field == "containers" {
                spec["containers"][1]["volumeMounts"] = mount;
            } else {
                spec["initContainers"] = json!([{"name": "setup", "volumeMounts": mount}]);
            }
            let ps = problems(
                json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/containers": "app"}),
                spec,
            );
            assert!(
                ps.iter()
                    .any(|p| p.message.contains(&format!("mounts volume `{volume}`"))
                        && p.message.contains("reserved")),
                "{volume}: {ps:?}"
            );
        }
        // refresh in file mode: no warning, the sidecar keeps the files current
        let s = inject(
            json!({"secret-injector.io/secret-a": "vault:kv/a", "secret-injector.io/refresh-interval": "1m"}),
        );
        assert_eq!(s.warnings, Vec::<String>::new());
        assert_eq!(s.refresh_interval, Some(Duration::from_secs(60)));
        // in env mode: the running process keeps its variables, and admission says so
        let s = inject(
            json!({"secret-injector.io/env-A": "vault:kv/a#x", "secret-injector.io/refresh-interval": "1m"}),
        );
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("keeps the variables it started with")),
            "{:?}",
            s.warnings
        );
        // identity annotations are validated even when there is nothing to inject
        let p = pod(
            json!({"secret-injector.io/vault-auth-method": "ldap"}),
            one_app(),
        );
        assert!(parse(&p, &Config::default(), &Context::default()).is_err());
    }

    #[test]
    fn bad_durations_identity_and_typos() {
        let base = |k: &str, v: &str| json!({"secret-injector.io/secret-a": "vault:kv/a", k: v});
        assert!(
            one_problem(base("secret-injector.io/refresh-interval", "five"))
                .message
                .contains("not a duration")
        );
        assert!(
            one_problem(base("secret-injector.io/refresh-interval", "1s"))
                .message
                .contains("minimum")
        );
        assert!(
            inject(base("secret-injector.io/refresh-interval", "5m")).refresh_interval
                == Some(Duration::from_secs(300))
        );
        assert!(
            one_problem(base("secret-injector.io/vault-auth-method", "ldap"))
                .message
                .contains("kubernetes")
        );
        assert!(
            one_problem(base(
                "secret-injector.io/vault-addr",
                "http://169.254.169.254"
            ))
            .message
            .contains("allowed_addresses")
        );
        assert!(
            one_problem(base("secret-injector.io/aws-role-arn", "app-role"))
                .message
                .contains("IAM role ARN")
        );
        assert!(
            one_problem(base("secret-injector.io/aws-region", "Europe"))
                .message
                .contains("not an AWS region")
        );
        let p = one_problem(base("secret-injector.io/vault-rol", "x"));
        assert!(
            p.message
                .contains("did you mean `secret-injector.io/vault-role`"),
            "{}",
            p.message
        );
        let p = one_problem(base("secret-injector.io/secrte-db", "vault:kv/x"));
        assert!(
            p.message
                .contains("did you mean `secret-injector.io/secret-db`"),
            "{}",
            p.message
        );
        let p = one_problem(base("secret-injector.io/mountpath", "/x"));
        assert!(
            p.message.contains("`secret-injector.io/mount-path`"),
            "{}",
            p.message
        );
    }

    #[test]
    fn allowed_vault_addr_and_service_account_role() {
        let mut cfg = Config::default();
        cfg.vault.allowed_addresses = vec!["https://vault-eu.example:8200".into()];
        let p = pod(
            json!({"secret-injector.io/secret-a": "aws:a", "secret-injector.io/vault-addr": "https://vault-eu.example:8200/"}),
            one_app(),
        );
        let ctx = Context {
            service_account_role_arn: Some("arn:aws:iam::123456789012:role/sa".into()),
            ..Context::default()
        };
        let Ok(Decision::Inject(s)) = parse(&p, &cfg, &ctx) else {
            panic!()
        };
        assert_eq!(s.vault.address, "https://vault-eu.example:8200");
        assert_eq!(
            s.aws.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/sa")
        );
    }

    #[test]
    fn templates_naming_undeclared_secrets_are_refused() {
        let p = one_problem(
            json!({"secret-injector.io/secret-db": "vault:kv/db", "secret-injector.io/template-config.yaml": "k: {{ secrets.api.key }}"}),
        );
        assert_eq!(p.annotation, "secret-injector.io/template-config.yaml");
        assert!(p.message.contains("secret `api`"));
    }

    /// Issue 26: every problem of one template, each on its own line of the denial and
    /// naming the template's annotation, beside the other annotations' problems.
    #[test]
    fn every_problem_of_a_template_is_reported_at_once() {
        let ps = problems(
            json!({
                "secret-injector.io/secret-db": "vault:kv/db",
                "secret-injector.io/secret-bad": "vualt:kv/x",
                "secret-injector.io/template-config.yaml": "user: {{ secrets.db.username }}\napi: {{ secrets.api.key | b64encode }}\n{% if secrets.db.port is nmber %}port: {{ secrets.db.port }}{% endif %}\n",
            }),
            one_app(),
        );
        let msg = Problems(ps.clone(), 0).to_string();
        assert_eq!(ps.len(), 4, "{msg}");
        assert_eq!(ps[0].annotation, "secret-injector.io/secret-bad", "{msg}");
        let template: Vec<&str> = ps[1..]
            .iter()
            .map(|p| {
                assert_eq!(p.annotation, "secret-injector.io/template-config.yaml");
                p.message.as_str()
            })
            .collect();
        assert!(
            template[0].contains("secret `api`") && template[0].ends_with("(line 2)"),
            "{msg}"
        );
        assert!(template[1].contains("unknown filter `b64encode`"), "{msg}");
        assert!(template[2].contains("did you mean `number`?"), "{msg}");
        assert!(
            msg.starts_with("4 problems with the pod's annotations:"),
            "{msg}"
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let ps = problems(
            json!({
                "secret-injector.io/secret-a": "nope:x",
                "secret-injector.io/secret-b": "vault:",
                "secret-injector.io/file-mode-a": "9",
                "secret-injector.io/containers": "ghost",
                "secret-injector.io/bogus": "1",
            }),
            one_app(),
        );
        let keys: BTreeSet<&str> = ps.iter().map(|p| p.annotation.as_str()).collect();
        assert_eq!(keys.len(), 5, "{ps:?}");
        let msg = Problems(ps, 0).to_string();
        assert!(msg.starts_with("5 problems"), "{msg}");
    }

    #[test]
    fn reload_url_is_a_loopback_http_url_of_a_refreshing_pod() {
        let ok = inject(json!({
            "secret-injector.io/secret-a": "vault:kv/a",
            "secret-injector.io/refresh-interval": "1m",
            "secret-injector.io/reload-url": "http://127.0.0.1:9090/-/reload",
        }));
        assert_eq!(
            ok.reload_url.as_deref(),
            Some("http://127.0.0.1:9090/-/reload")
        );
        for (url, refresh, want) in [
            (
                "http://127.0.0.1:9090/-/reload",
                None,
                "add secret-injector.io/refresh-interval",
            ),
            (
                "http://example.com:80/reload",
                Some("1m"),
                "must point at the pod itself",
            ),
            ("https://127.0.0.1:9090/", Some("1m"), "must be http://"),
            (
                "http://u:p@127.0.0.1:1/",
                Some("1m"),
                "must not carry credentials",
            ),
            ("not a url", Some("1m"), "is not a URL"),
        ] {
            let mut ann = json!({
                "secret-injector.io/secret-a": "vault:kv/a",
                "secret-injector.io/reload-url": url,
            });
            if let Some(r) = refresh {
                ann["secret-injector.io/refresh-interval"] = json!(r);
            }
            let ps = problems(ann, one_app());
            assert!(
                ps.iter()
                    .any(|p| p.annotation == "secret-injector.io/reload-url"
                        && p.message.contains(want)),
                "{url}: {ps:?}"
            );
        }
    }

    /// The sidecar's probe port must be free in the pod, and not the node's.
    #[test]
    fn refresh_needs_the_probe_port() {
        let ann = json!({
            "secret-injector.io/secret-a": "vault:kv/a",
            "secret-injector.io/refresh-interval": "1m",
        });
        let taken = json!({"containers": [
            {"name": "app", "image": "app", "ports": [{"containerPort": 8099}]},
        ]});
        let ps = problems(ann.clone(), taken);
        assert!(
            ps.iter()
                .any(|p| p.annotation == "secret-injector.io/refresh-interval"
                    && p.message.contains("container `app` declares port 8099")),
            "{ps:?}"
        );
        let host = json!({"hostNetwork": true, "containers": [{"name": "app", "image": "app"}]});
        let ps = problems(ann.clone(), host);
        assert!(
            ps.iter().any(|p| p.message.contains("hostNetwork")),
            "{ps:?}"
        );
        // other ports, or no refresh: fine
        let other = json!({"containers": [
            {"name": "app", "image": "app", "ports": [{"containerPort": 8080}]},
        ]});
        assert!(inject_into(ann, other).refresh_interval.is_some());
        let host = json!({"hostNetwork": true, "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 8099}]}]});
        assert!(
            inject_into(json!({"secret-injector.io/secret-a": "vault:kv/a"}), host)
                .refresh_interval
                .is_none()
        );
    }

    fn inject_into(annotations: serde_json::Value, spec: serde_json::Value) -> InjectionSpec {
        match parse(
            &pod(annotations, spec),
            &Config::default(),
            &Context::default(),
        ) {
            Ok(Decision::Inject(s)) => *s,
            other => panic!("expected injection, got {other:?}"),
        }
    }

    /// A static pod's mirror is left alone, with the reason: the kubelet runs the file on
    /// its disk, so a patched mirror would say `injected` about a pod without secrets.
    #[test]
    fn mirror_pods_are_skipped() {
        let p = pod(
            json!({
                "secret-injector.io/secret-a": "vault:kv/a",
                "kubernetes.io/config.mirror": "3b0a9c7f",
            }),
            one_app(),
        );
        match parse(&p, &Config::default(), &Context::default()) {
            Ok(Decision::Skip(reason)) => assert_eq!(reason, Skip::Mirror),
            other => panic!("a mirror pod must be skipped: {other:?}"),
        }
    }

    /// A broken env-mode reference does not hide the container's missing `command`:
    /// both come in the first answer.
    #[test]
    fn a_broken_env_reference_still_gets_the_env_mode_checks() {
        let ps = problems(
            json!({"secret-injector.io/env-TOKEN": "aws: prod/token"}),
            json!({"containers": [{"name": "app", "image": "app"}]}),
        );
        assert!(
            ps.iter()
                .any(|p| p.annotation == "secret-injector.io/env-TOKEN"
                    && p.message.contains("command")),
            "{ps:?}"
        );
        assert!(ps.len() >= 2, "the reference and the command: {ps:?}");
    }

    /// Likewise in file mode: a broken reference does not hide a mount-path collision.
    #[test]
    fn a_broken_file_reference_still_gets_the_mount_checks() {
        let ps = problems(
            json!({"secret-injector.io/secret-db": "aws: prod/db"}),
            json!({"containers": [{"name": "app", "image": "app",
                "volumeMounts": [{"name": "data", "mountPath": "/secrets"}]}]}),
        );
        assert!(
            ps.iter()
                .any(|p| p.annotation == "secret-injector.io/secret-db"),
            "{ps:?}"
        );
        assert!(
            ps.iter()
                .any(|p| p.annotation == "secret-injector.io/mount-path"
                    && p.message.contains("collides")),
            "{ps:?}"
        );
    }
}
