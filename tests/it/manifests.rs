//! The install manifests as Kustomize renders them (`kubectl kustomize`, from the test
//! venv): a config change renames the ConfigMap and so rolls the Deployment, and a
//! user's overlay that sets only `images:` gets that image injected, checked end to end
//! by running the rendered Deployment's container against the stand-in API server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::in_cluster::{NAMESPACE, POD, Serve, aws_pod, in_cluster_env, injected, webhook_pod};
use crate::support::{ApiServer, rbac_grants, venv_bin};
use crate::util::{self, rt};

/// `kubectl kustomize DIR` as text.
pub fn render_text(dir: &Path) -> String {
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize DIR` as documents.
pub fn render(dir: &Path) -> Vec<Value> {
    webhook::inject::parse_documents(&render_text(dir)).unwrap()
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// A copy of `manifests/` under `to`, for changing it.
fn copy_manifests(to: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = to.join("manifests");
    copy(&util::repo().join("manifests"), &dir);
    dir
}

/// An overlay of the user's own, next to the copy: `resources: [../manifests]` and
/// `extra` (YAML).
fn overlay(root: &Path, extra: &str) -> PathBuf {
    let dir = root.join("overlay");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../manifests\n{extra}"),
    )
    .unwrap();
    dir
}

/// The ConfigMap's name, and the one the Deployment's config volume refers to.
fn config_names(docs: &[Value]) -> (String, String) {
    let cm = one(docs, "ConfigMap");
    let deployment = one(docs, "Deployment");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    (
        cm["metadata"]["name"].as_str().unwrap().to_string(),
        volume["configMap"]["name"].as_str().unwrap().to_string(),
    )
}

/// `secret-injector-config-<hash>`, Kustomize's 10-character hash.
fn assert_hashed(name: &str) {
    let hash = name
        .strip_prefix("secret-injector-config-")
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        hash.len() == 10
            && hash
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{name} has no hash suffix"
    );
}

/// The webhook reads its config once, at start: the ConfigMap is generated with a hash
/// of its content in its name, and the Deployment refers to that name, so a change
/// (in manifests/base/config.yaml, or in an overlay's generator) changes the pod
/// template and rolls the Deployment.
#[test]
fn a_config_change_renames_the_configmap_and_so_rolls_the_deployment() {
    let docs = render(&util::repo().join("manifests"));
    let (name, used) = config_names(&docs);
    assert_hashed(&name);
    assert_eq!(used, name, "the Deployment mounts the generated ConfigMap");
    let cm = one(&docs, "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/name"],
        "secret-injector"
    );
    let yaml = cm["data"]["config.yaml"].as_str().unwrap();
    webhook::config::Config::from_yaml_and_env(yaml, std::iter::empty()).expect("a valid config");
    let cert_manager = render(&util::repo().join("manifests/cert-manager"));
    assert_eq!(config_names(&cert_manager), (name.clone(), name.clone()));

    // Changing config.yaml in the base: a new name, and the Deployment follows.
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_manifests(tmp.path());
    let file = copy.join("base/config.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("region: us-east-1"));
    std::fs::write(
        &file,
        text.replace("region: us-east-1", "region: eu-west-1"),
    )
    .unwrap();
    let (changed, used) = config_names(&render(&copy));
    assert_hashed(&changed);
    assert_ne!(changed, name, "a new config is a new ConfigMap");
    assert_eq!(used, changed);

    // In an overlay of the user's own, with the generator's `behavior: merge`.
    std::fs::write(&file, text).unwrap();
    let dir = overlay(
        tmp.path(),
        "configMapGenerator:\n  - name: secret-injector-config\n    namespace: secret-injector-system\n    behavior: merge\n    files: [config.yaml]\n",
    );
    std::fs::write(
        dir.join("config.yaml"),
        "vault:\n  address: https://vault.example:8200\n",
    )
    .unwrap();
    let docs = render(&dir);
    let (merged, used) = config_names(&docs);
    assert_hashed(&merged);
    assert_ne!(merged, name);
    assert_eq!(used, merged);
    let yaml = one(&docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .unwrap();
    let config = webhook::config::Config::from_yaml_and_env(yaml, std::iter::empty()).unwrap();
    assert_eq!(config.vault.address, "https://vault.example:8200");
}

/// The container's env as the kubelet gives it: values, and the downward API's pod
/// name and namespace.
pub fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => POD.to_string(),
                Some("metadata.namespace") => NAMESPACE.to_string(),
                Some(other) => panic!("fieldRef {other} is not modelled"),
                None => e["value"].as_str().unwrap().to_string(),
            };
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// Run the webhook as the rendered Deployment runs it, in a cluster the stand-in API
/// server plays: its pod (made from the template) and RBAC (enforced, from the rendered
/// roles), the container's env, the ConfigMap's config.yaml, no `--kube` flag.
pub fn run_rendered(docs: &[Value], api: &ApiServer, work: &Path) -> Serve {
    let deployment = one(docs, "Deployment");
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.iter().all(|a| !a.starts_with("--kube")),
        "the Deployment needs no --kube flag: {args:?}"
    );
    api.enforce(rbac_grants(docs, NAMESPACE, "secret-injector"));
    api.put("pods", webhook_pod(template));
    let config = work.join("config.yaml");
    std::fs::write(
        &config,
        one(docs, "ConfigMap")["data"]["config.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let kubeconfig = api.kubeconfig(work);
    let port: u16 = api.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut env = in_cluster_env(port);
    env.extend(container_env(container));
    env.push((
        "KUBECONFIG".to_string(),
        kubeconfig.to_str().unwrap().to_string(),
    ));
    let mut serve = Serve::start(&env, &["--config", config.to_str().unwrap()]);
    serve.wait_ready(Duration::from_secs(20));
    serve
}

/// A user's overlay that sets only `images:` (here a digest in another registry),
/// without the `replacements:` block the old README asked to copy: the rendered
/// manifests hold that image once, in the webhook's container, and no stale copy (no
/// SECRET_INJECTOR_IMAGE, no `image:` in the config); and the webhook run from them
/// injects exactly that image.
#[test]
fn an_overlay_that_sets_only_images_gets_its_image_injected() {
    let image = "registry.example.com/team/si@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let tmp = tempfile::tempdir().unwrap();
    copy_manifests(tmp.path());
    let dir = overlay(
        tmp.path(),
        "images:\n  - name: ghcr.io/secret-injector/secret-injector\n    newName: registry.example.com/team/si\n    digest: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
    );
    let text = render_text(&dir);
    assert!(
        !text.contains("ghcr.io/secret-injector"),
        "a stale image:\n{text}"
    );
    assert_eq!(
        text.matches("registry.example.com/team/si").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("SECRET_INJECTOR_IMAGE"), "{text}");
    let docs = webhook::inject::parse_documents(&text).unwrap();
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        image
    );
    let config = one(&docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .unwrap();
    assert!(!webhook::cluster::image_is_configured(config, None));

    let rt = rt();
    let api = rt.block_on(ApiServer::start());
    api.put_service_account("prod", "app", &[]);
    let serve = run_rendered(&docs, &api, tmp.path());
    let patch = serve.patch(&aws_pod(), "prod");
    assert_eq!(injected(&patch)["image"], image);
    assert!(api.seen().iter().all(|s| !s.refused), "{:?}", api.seen());
    assert!(
        serve.metrics().contains(&format!(
            "secret_injector_injected_image_info{{image=\"{image}\",source=\"pod\",own=\"{image}\"}} 1"
        )),
        "{}",
        serve.metrics()
    );
}

/// The image runs the agent unless told otherwise: the injected containers set only
/// `args` (`init …`, `refresh …`), so the Dockerfile's ENTRYPOINT must be the agent,
/// which parses them; the webhook's Deployment names the webhook's binary, whose
/// `serve` its args start with. The Dockerfile builds and ships every binary this
/// package makes, each where the Deployment and the entrypoint look for it.
#[test]
fn the_image_s_entrypoint_is_the_agent_and_the_deployment_runs_the_webhook() {
    let dockerfile = std::fs::read_to_string(util::repo().join("Dockerfile")).unwrap();
    let entrypoint = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENTRYPOINT "))
        .collect::<Vec<_>>();
    assert_eq!(entrypoint, [r#"["/usr/local/bin/secret-injector-agent"]"#]);
    let copied = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY --from=build"))
        .unwrap();
    for bin in [
        util::BIN,
        util::AGENT,
        env!("CARGO_BIN_EXE_secret-injector-exec"),
    ] {
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        // `--bin secret-injector` is a prefix of `--bin secret-injector-agent`: the
        // name must end where the argument does.
        assert!(
            dockerfile.contains(&format!("--bin {name} ")),
            "not built: {name}"
        );
        let cp = &dockerfile[dockerfile.find(" cp ").expect("a cp of the binaries")..];
        let cp = &cp[..cp.find("/out/").unwrap()];
        assert!(
            cp.contains(&format!("/{name} ")),
            "not copied to /out: {name}"
        );
        assert!(
            copied.contains(&format!("/out/{name} ")),
            "not shipped: {name}"
        );
    }
    assert!(copied.ends_with(" /usr/local/bin/"), "{copied}");

    let docs = render(&util::repo().join("manifests"));
    let deployment = one(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["command"],
        serde_json::json!(["/usr/local/bin/secret-injector"])
    );
    assert_eq!(container["args"][0], "serve");
    // What the injected init container runs with the image's entrypoint parses as the
    // agent's command line.
    let out = util::bin().arg("serve").arg("--help").output().unwrap();
    assert!(out.status.success());
    let out = util::agent().arg("init").arg("--help").output().unwrap();
    assert!(out.status.success());
    let out = util::bin().arg("init").arg("--help").output().unwrap();
    assert!(!out.status.success(), "the webhook's binary has no `init`");
}
