//! Which containers get the secrets, where, and how they start.

use super::*;

pub fn app_user(pod: &PodView, targets: &[Target]) -> Option<(i64, Option<i64>)> {
    let mut users = targets.iter().map(|t| {
        let ct = container(pod, t);
        (pod.run_as_user(ct), pod.run_as_group(ct))
    });
    let first = users.next()?;
    // uid 0 with all capabilities dropped cannot read another user's 0400 file,
    // so root counts as "unknown" too.
    let (Some(uid @ 1..), gid) = first else {
        return None;
    };
    users.all(|u| u == first).then_some((uid, gid))
}

/// Mode of files without `file-mode-<name>`: owner-only when the injected container can
/// run as the app's user; group-readable when only `fsGroup` is known (the memory
/// volume's files then belong to that group); else readable by all on the pod-private
/// volume, because a user set only inside the image is unknown to the webhook.
pub fn default_file_mode(pod: &PodView, targets: &[Target]) -> u32 {
    if app_user(pod, targets).is_some() {
        0o400
    } else if pod.pod_security().and_then(|s| s.fs_group).is_some() {
        0o440
    } else {
        0o444
    }
}

/// The container a target points at.
pub fn container<'a>(pod: &'a PodView, t: &Target) -> &'a ContainerView {
    if t.init {
        &pod.init_containers()[t.index]
    } else {
        &pod.containers()[t.index]
    }
}

pub(super) fn is_default_target(c: &ContainerView) -> bool {
    !MESH_SIDECARS.contains(&c.name.as_str())
}

pub(super) fn select_targets(c: &mut Collector, pod: &PodView, list: Option<&str>) -> Vec<Target> {
    let containers = pod.containers();
    let inits = pod.init_containers();
    let Some(list) = list else {
        let targets: Vec<Target> = containers
            .iter()
            .enumerate()
            .filter(|(_, ct)| is_default_target(ct))
            .map(|(index, ct)| Target {
                init: false,
                index,
                name: ct.name.clone(),
            })
            .collect();
        if targets.is_empty() {
            c.push(
                "containers",
                "the pod has no app container to receive the secrets; name one, for example secret-injector.io/containers: app",
            );
        }
        return targets;
    };
    let mut targets = Vec::new();
    let names = comma_list(list);
    if names.is_empty() {
        c.push(
            "containers",
            "is empty; list container names separated by commas, for example secret-injector.io/containers: app,worker",
        );
    }
    // One index of the pod's containers, so a long list costs linear time.
    let mut index: std::collections::HashMap<&str, (bool, usize)> = inits
        .iter()
        .enumerate()
        .map(|(i, ct)| (ct.name.as_str(), (true, i)))
        .collect();
    index.extend(
        containers
            .iter()
            .enumerate()
            .map(|(i, ct)| (ct.name.as_str(), (false, i))),
    );
    let all_names: Vec<&str> = containers
        .iter()
        .chain(inits)
        .map(|ct| ct.name.as_str())
        .collect();
    let listed = reference::short_list(all_names.iter().copied());
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            c.push(
                "containers",
                format!("`{name}` is listed twice; list each container once"),
            );
            continue;
        }
        if let Some(&(init, index)) = index.get(name) {
            targets.push(Target {
                init,
                index,
                name: name.to_string(),
            });
        } else {
            let hint = if c.may_suggest() {
                c.suggest(name, all_names.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            c.push(
                "containers",
                format!("the pod has no container `{name}`{hint}; its containers are: {listed}"),
            );
        }
    }
    targets
}

pub(super) fn check_mount_path(c: &mut Collector, path: &str) -> String {
    let example = "for example secret-injector.io/mount-path: /var/run/secrets/app";
    let problem = if path.len() > MAX_PATH {
        Some(format!(
            "the path is {} bytes; at most {MAX_PATH}, {example}",
            path.len()
        ))
    } else if !path.starts_with('/') {
        Some(format!(
            "`{path}` is a relative path; use an absolute path, {example}"
        ))
    } else if path == "/" {
        Some(format!(
            "`/` would hide the container's file system; {example}"
        ))
    } else if path.len() > 1 && path.ends_with('/') {
        Some(format!(
            "`{path}` ends with `/`; write it without, {example}"
        ))
    } else if path[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        Some(format!(
            "`{path}` has an empty, `.` or `..` segment; {example}"
        ))
    } else if path.contains(':') || path.chars().any(char::is_control) {
        Some(format!(
            "`{path}` contains `:` or control characters; {example}"
        ))
    } else {
        None
    };
    if let Some(m) = problem {
        c.push("mount-path", m);
    }
    path.to_string()
}

/// True when one path is the other or lies under it.
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let under =
        |x: &str, y: &str| x == y || x.starts_with(&format!("{}/", y.trim_end_matches('/')));
    under(a, b) || under(b, a)
}

/// Existing mounts of the selected containers that `path` would collide with.
pub(super) fn collisions(pod: &PodView, targets: &[Target], path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in targets {
        for m in container(pod, t).volume_mounts.iter().flatten() {
            if overlaps(path, &m.mount_path) && out.len() < MAX_PROBLEMS {
                use contract::text::Escaped;
                out.push(format!(
                    "collides with the mount of volume `{}` at {} in container `{}`",
                    Escaped(&m.name),
                    Escaped(&m.mount_path),
                    Escaped(&t.name)
                ));
            }
        }
    }
    out
}

pub(super) fn check_mount_collisions(
    c: &mut Collector,
    pod: &PodView,
    targets: &[Target],
    path: &str,
    annotation: &str,
) {
    for problem in collisions(pod, targets, path) {
        c.push(
            annotation,
            format!(
                "`{path}` {problem}; choose another path, for example secret-injector.io/mount-path: /var/run/secrets/app"
            ),
        );
    }
}

/// The annotation env-mode problems are reported under.
pub(super) fn first_env_key(ours: &BTreeMap<&str, &str>) -> String {
    if ours.contains_key("env-from") {
        "env-from".to_string()
    } else {
        ours.keys()
            .find(|k| k.starts_with("env-"))
            .map_or_else(|| "env-from".to_string(), |k| k.to_string())
    }
}

pub(super) fn check_entrypoints(
    c: &mut Collector,
    pod: &PodView,
    targets: &[Target],
    command: Option<&Vec<String>>,
    env_key: &str,
) {
    for t in targets {
        let ct = container(pod, t);
        let has_command = ct.command.as_ref().is_some_and(|c| !c.is_empty());
        if !has_command && command.is_none() {
            c.push(
                env_key,
                format!(
                    "env mode starts container `{}` through `secret-injector exec`, so it must know the entrypoint, but the container has no `command` (the image's ENTRYPOINT is not visible to the webhook); set `command` on the container, or annotate secret-injector.io/command: '[\"/path/to/app\"]'",
                    contract::text::Escaped(&t.name)
                ),
            );
        }
    }
}

/// The refresh sidecar serves its probes on [`PROBE_PORT`] in the pod's network
/// namespace: no container of the pod may use that port, and with `hostNetwork` it would
/// be the node's port, which every such pod on the node would want.
pub(super) fn check_probe_port(c: &mut Collector, pod: &PodView) {
    use contract::names::PROBE_PORT;
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        c.push(
            "refresh-interval",
            format!(
                "the refresh sidecar serves its probes on port {PROBE_PORT}, and with hostNetwork: true that is the node's port, shared by every such pod on the node; remove secret-injector.io/refresh-interval (the secrets are then fetched once) or run the pod without hostNetwork"
            ),
        );
        return;
    }
    let all = pod.containers().iter().chain(pod.init_containers());
    for ct in all {
        if ct
            .ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i64::from(PROBE_PORT))
        {
            c.push(
                "refresh-interval",
                format!(
                    "container `{}` declares port {PROBE_PORT}, which the refresh sidecar uses for its probes in the same network namespace; move that port, or remove secret-injector.io/refresh-interval",
                    contract::text::Escaped(&ct.name)
                ),
            );
        }
    }
}

/// Where env mode puts things in the selected containers.
pub(super) struct Placement<'a> {
    pub pod: &'a PodView,
    pub targets: &'a [Target],
    /// The files' mount path, when the pod also has files.
    pub mount_path: Option<&'a str>,
    pub command: Option<&'a Vec<String>>,
}

/// Env mode's volume must not collide with the pod's mounts or the files' mount, and
/// every wrapped container needs a known entrypoint.
pub(super) fn check_env_mode(c: &mut Collector, p: &Placement<'_>, env_key: &str) {
    for problem in collisions(p.pod, p.targets, ENV_MOUNT_PATH) {
        c.push(
            env_key,
            format!(
                "env mode mounts its volume at {ENV_MOUNT_PATH}, which {problem}; move that mount elsewhere, or use files instead of env vars"
            ),
        );
    }
    if let Some(mount_path) = p.mount_path
        && overlaps(mount_path, ENV_MOUNT_PATH)
    {
        c.push(
            "mount-path",
            format!(
                "`{mount_path}` overlaps {ENV_MOUNT_PATH}, which env mode uses; pick another path, for example /secrets"
            ),
        );
    }
    check_entrypoints(c, p.pod, p.targets, p.command, env_key);
}

/// Env mode's placement checks, by how the variables are delivered; `command`
/// outside the wrapper is ignored, with a warning.
pub(super) fn env_checks(
    c: &mut Collector,
    warnings: &mut Vec<String>,
    ours: &BTreeMap<&str, &str>,
    plan: &FetchPlan,
    placement: &Placement<'_>,
) {
    let command = placement.command.is_some();
    if declares_env(ours, plan) && plan.env_delivery == EnvDelivery::FileKeyRef {
        // The kubelet sets the variables: nothing mounted in, no command wrapped.
        if command {
            warnings.push(
                "secret-injector.io/command is not used with env_delivery file-key-ref: the kubelet sets the variables and the command is not wrapped; it is ignored".to_string(),
            );
        }
    } else if declares_env(ours, plan) {
        check_env_mode(c, placement, &first_env_key(ours));
    } else if command {
        warnings.push(
            "secret-injector.io/command is only used in env mode (env-<VAR> or env-from annotations); it is ignored".to_string(),
        );
    }
}

/// `env_delivery: file-key-ref` for a pod whose variable names are all known at
/// admission (`env-<VAR>` only); `env-from` keeps the wrapper.
pub(super) fn choose_env_delivery(
    warnings: &mut Vec<String>,
    config: &Config,
    pod: &PodView,
    ours: &BTreeMap<&str, &str>,
    plan: &mut FetchPlan,
) {
    if config.env_delivery != EnvDelivery::FileKeyRef || !declares_env(ours, plan) {
        return;
    }
    let loader = plan.env.keys().find(|k| is_loader_variable(k));
    if ours.contains_key("env-from") {
        warnings.push(
            "secret-injector.io/env-from: its variable names are unknown at admission, so this pod's env mode uses the exec wrapper, not env_delivery file-key-ref (its containers need a `command`)".to_string(),
        );
    } else if let Some(name) = loader {
        // The runtime would look the command up with an injected PATH (or load code by
        // another loader variable); exec resolves the program before it sets any.
        warnings.push(format!(
            "secret-injector.io/env-{name}: `{name}` chooses which program or code the app runs, so this pod's env mode uses the exec wrapper, which resolves the program before setting it, not env_delivery file-key-ref (its containers need a `command`)"
        ));
    } else {
        plan.env_delivery = EnvDelivery::FileKeyRef;
        // The kubelet expands `$(VAR)` in command and args for variables it knows.
        let all = pod.containers().iter().chain(pod.init_containers());
        for ct in all {
            let argv = ct.command.iter().chain(ct.args.iter()).flatten();
            if let Some(name) = plan
                .env
                .keys()
                .find(|n| argv.clone().any(|a| a.contains(&format!("$({n})"))))
            {
                warnings.push(format!(
                    "container `{}` uses $({name}) in its command or args: with env_delivery file-key-ref the kubelet expands it, so the value is in the process's arguments, visible to `ps`; read the variable in the app instead",
                    contract::text::Escaped(&ct.name)
                ));
            }
        }
    }
}
