//! `serve` and the Kubernetes API (`--kube auto|required|off`), and the image it
//! injects (its own, read from its pod), run as a process against the stand-in API
//! server (`support::ApiServer`): in a cluster (KUBERNETES_SERVICE_HOST set) without a
//! config, with an unreachable API, with a reachable one, with RBAC that refuses.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ApiServer, free_port, rbac_grants, write_kubeconfig};
use crate::util::{self, http_get, make_certs, rt};

/// The environment of a pod of the webhook's Deployment, as far as `serve` reads it.
pub const NAMESPACE: &str = "secret-injector-system";
pub const POD: &str = "secret-injector-7d9c6b5f4-x2x4z";

/// A `serve` process with a clean environment (no inherited Kubernetes or
/// secret-injector variables, an empty HOME, so no ~/.kube/config), killed on drop.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// The environment of a process in a cluster: the kubelet's service variables, and the
/// downward API's pod name and namespace as the Deployment sets them.
pub fn in_cluster_env(api_port: u16) -> Vec<(String, String)> {
    [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", api_port.to_string()),
        ("SECRET_INJECTOR_POD_NAME", POD.to_string()),
        ("SECRET_INJECTOR_POD_NAMESPACE", NAMESPACE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Serve {
    /// Start `serve` with `env` and `args` (after the listeners and the certificate).
    /// Retried on other ports when one was taken in between.
    pub fn start(env: &[(String, String)], args: &[&str]) -> Serve {
        for _ in 0..5 {
            let mut s = Serve::spawn(env, args);
            // Up (the admin port answers) or exited.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if http_get(s.admin, "/healthz").is_ok() {
                    return s;
                }
                if s.child.try_wait().unwrap().is_some() {
                    if s.log_text().contains("Address already in use") {
                        break;
                    }
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if s.child.try_wait().unwrap().is_none() {
                return s;
            }
        }
        panic!("serve could not bind free ports in 5 attempts");
    }

    fn spawn(env: &[(String, String)], args: &[&str]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path(), None);
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let (port, admin) = (free_port(), free_port());
        let log = dir.path().join("serve.log");
        let mut command = util::bin();
        for (name, _) in std::env::vars() {
            if name.starts_with("KUBERNETES_") || name.starts_with("SECRET_INJECTOR_") {
                command.env_remove(name);
            }
        }
        let child = command
            .env_remove("KUBECONFIG")
            .env_remove("HOSTNAME")
            .env("HOME", &home)
            .env("RUST_LOG", "info")
            .args([
                "serve",
                "--shutdown-delay=0s",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--tls-cert",
                dir.path().join("tls.crt").to_str().unwrap(),
                "--tls-key",
                dir.path().join("tls.key").to_str().unwrap(),
            ])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn serve");
        Serve {
            child,
            port,
            admin,
            dir,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status within `timeout`, or `None` while it still runs.
    pub fn exited(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The body of `/readyz`.
    pub fn readyz(&self) -> String {
        http_get(self.admin, "/readyz").unwrap_or_default()
    }

    /// Wait until `/readyz` says ready; the log if it never does.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.readyz().starts_with("ready") {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "not ready after {timeout:?}: {}; log:\n{}",
            self.readyz(),
            self.log_text()
        );
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").unwrap()
    }

    /// The JSON patch the webhook answers for `pod` (created in `namespace`).
    pub fn patch(&self, pod: &Value, namespace: &str) -> Vec<Value> {
        let review = webhook::admission::request_for(pod, namespace, "CREATE");
        let client = util::https_client(&self.dir.path().join("ca.crt"));
        let url = format!("https://127.0.0.1:{}/mutate", self.port);
        let answer: Value = rt().block_on(async {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(review)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        use base64::Engine as _;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&patch).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An AWS pod of ServiceAccount `app` with no role of its own.
pub fn aws_pod() -> Value {
    json!({
        "metadata": {"generateName": "app-", "annotations": {"secret-injector.io/secret-db": "aws:prod/db#password"}},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "app:1"}]},
    })
}

/// The injected container the patch adds, and the value of `env` in it.
pub fn injected(patch: &[Value]) -> &Value {
    patch
        .iter()
        .filter(|op| {
            op["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/spec/initContainers"))
        })
        .map(|op| {
            if op["value"].is_array() {
                &op["value"][0]
            } else {
                &op["value"]
            }
        })
        .find(|c| c["name"] == "secret-injector-init")
        .unwrap_or_else(|| panic!("no init container in {patch:?}"))
}

pub fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// The webhook's own pod as the API server returns it, made from a pod template.
pub fn webhook_pod(template: &Value) -> Value {
    let mut pod =
        json!({"metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    pod["metadata"]["name"] = json!(POD);
    pod["metadata"]["namespace"] = json!(NAMESPACE);
    pod["spec"]["nodeName"] = json!("node-1");
    pod
}

fn webhook_pod_with_image(image: &str) -> Value {
    webhook_pod(&json!({
        "metadata": {"labels": {"app.kubernetes.io/name": "secret-injector"}},
        "spec": {"containers": [{"name": "secret-injector", "image": image, "args": ["serve"]}]},
    }))
}

/// The stand-in, with the webhook's pod and an `app` ServiceAccount that carries a role.
fn stand_in(rt: &tokio::runtime::Runtime, own_image: &str) -> ApiServer {
    let api = rt.block_on(ApiServer::start());
    api.put("pods", webhook_pod_with_image(own_image));
    api.put_service_account(
        "prod",
        "app",
        &[(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::123456789012:role/app",
        )],
    );
    api.put_service_account("prod", "default", &[]);
    api
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn with(mut env: Vec<(String, String)>, more: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn kubeconfig_env(path: &Path) -> (String, String) {
    ("KUBECONFIG".to_string(), path.to_str().unwrap().to_string())
}

/// In a cluster, the default (`auto`) is `required`: with no Kubernetes config the
/// webhook refuses to start (exit 2) and says what to do, instead of running without
/// the ServiceAccount cache. `--kube off` is the explicit way to run without it.
/// Outside a cluster `auto` still runs, with a warning.
#[test]
fn in_a_cluster_without_a_kubernetes_config_the_webhook_refuses_to_start() {
    let cluster = in_cluster_env(free_port());
    let mut s = Serve::start(&cluster, &[]);
    let status = s
        .exited(Duration::from_secs(10))
        .expect("must refuse to start");
    assert_eq!(status.code(), Some(2), "{}", s.log_text());
    let log = s.log_text();
    assert!(
        log.contains("in a cluster (KUBERNETES_SERVICE_HOST is set) --kube auto requires the Kubernetes API, and no Kubernetes config was found"),
        "{log}"
    );
    assert!(
        log.contains("--kube off (SECRET_INJECTOR_KUBE=off)"),
        "{log}"
    );

    // `--kube required` outside a cluster, and SECRET_INJECTOR_KUBE=required: the same.
    for (env, args) in [
        (vec![], vec!["--kube=required"]),
        (
            with(vec![], &[("SECRET_INJECTOR_KUBE", "required")]),
            vec![],
        ),
    ] {
        let mut s = Serve::start(&env, &args);
        assert_eq!(
            s.exited(Duration::from_secs(10)).and_then(|s| s.code()),
            Some(2)
        );
        assert!(
            s.log_text()
                .contains("--kube required, and no Kubernetes config was found"),
            "{}",
            s.log_text()
        );
    }

    // `--kube off` in a cluster: serves, ready at once, and says what it gives up.
    let mut s = Serve::start(&cluster, &["--kube=off"]);
    s.wait_ready(Duration::from_secs(10));
    assert!(
        s.log_text()
            .contains("--kube off in a cluster: no ServiceAccount cache"),
        "{}",
        s.log_text()
    );
    assert!(!s.metrics().contains("service_account_cache_synced"));

    // Outside a cluster with no config: best effort, with a warning, ready.
    let mut s = Serve::start(&[], &[]);
    s.wait_ready(Duration::from_secs(10));
    assert!(
        s.log_text()
            .contains("no Kubernetes config found: running without the ServiceAccount cache"),
        "{}",
        s.log_text()
    );
}

/// `--kube required` with an API that cannot be reached: serving, but not ready, and
/// `/readyz` says why (with the watch's error) for as long as it lasts; once the API
/// answers, the cache syncs and the webhook becomes ready.
#[test]
fn a_required_api_that_cannot_be_reached_keeps_the_webhook_not_ready_until_it_can() {
    let rt = rt();
    let api_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(
        dir.path(),
        &format!("http://127.0.0.1:{api_port}"),
        "stand-in-token",
    );
    let mut s = Serve::start(&[kubeconfig_env(&kubeconfig)], &["--kube=required"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = s.readyz();
        assert!(body.starts_with("not ready: "), "{body}\n{}", s.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.exited(Duration::ZERO).is_none(), "still serving");
    assert!(
        body.starts_with("not ready: the ServiceAccount cache has not synced yet (--kube required: not ready until it has); last watch error: "),
        "{body}"
    );
    assert!(
        s.metrics()
            .contains("secret_injector_service_account_cache_synced 0")
    );

    // The API comes up on that port: the watch retries, syncs, and the webhook is ready.
    let _api = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
            .await
            .unwrap();
        ApiServer::serve(listener).await
    });
    s.wait_ready(Duration::from_secs(40));
    assert!(
        s.metrics()
            .contains("secret_injector_service_account_cache_synced 1")
    );
}

/// In a cluster with the API: ready once the cache has synced, role ARNs come from the
/// cache, and with no `image` configured the injected image is the webhook's own, read
/// from its pod.
#[test]
fn in_a_cluster_the_webhook_injects_its_own_image_and_reads_roles_from_the_cache() {
    let rt = rt();
    let api = stand_in(&rt, "registry.example.com/si@sha256:0123");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let env = with(
        in_cluster_env(port_of(&api.url)),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let mut s = Serve::start(&env, &[]);
    s.wait_ready(Duration::from_secs(20));
    let patch = s.patch(&aws_pod(), "prod");
    let init = injected(&patch);
    assert_eq!(
        init["image"], "registry.example.com/si@sha256:0123",
        "{init}"
    );
    assert_eq!(
        env_of(init, "AWS_ROLE_ARN"),
        Some("arn:aws:iam::123456789012:role/app")
    );
    let metrics = s.metrics();
    assert!(
        metrics.contains(
            "secret_injector_injected_image_info{image=\"registry.example.com/si@sha256:0123\",source=\"pod\",own=\"registry.example.com/si@sha256:0123\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("secret_injector_injected_image_mismatch 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secret_injector_service_account_cache_synced 1"),
        "{metrics}"
    );
}

/// A configured image (SECRET_INJECTOR_IMAGE, as the old manifests set it, stale after
/// an overlay's `images:`) that is not the webhook's own: it is still what is injected
/// (an explicit choice), but the start warns loudly and the mismatch metric is 1.
#[test]
fn a_configured_image_that_is_not_the_own_one_warns_and_sets_the_metric() {
    let rt = rt();
    let api = stand_in(&rt, "registry.example.com/si:2.0.0");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let env = with(
        in_cluster_env(port_of(&api.url)),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            (
                "SECRET_INJECTOR_IMAGE",
                "ghcr.io/secret-injector/secret-injector:0.1.0",
            ),
        ],
    );
    let mut s = Serve::start(&env, &[]);
    s.wait_ready(Duration::from_secs(20));
    let patch = s.patch(&aws_pod(), "prod");
    assert_eq!(
        injected(&patch)["image"],
        "ghcr.io/secret-injector/secret-injector:0.1.0"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .metrics()
        .contains("secret_injector_injected_image_mismatch 1")
    {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            s.metrics(),
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = s.log_text();
    assert!(
        log.contains("WARN")
            && log.contains("the injected containers' image `ghcr.io/secret-injector/secret-injector:0.1.0` (config `image` or SECRET_INJECTOR_IMAGE) is not this webhook's own image `registry.example.com/si:2.0.0`"),
        "{log}"
    );
    assert!(
        s.metrics()
            .contains("source=\"config\",own=\"registry.example.com/si:2.0.0\"} 1")
    );
}

/// With no `image` configured, a webhook that may not read its own pod (RBAC without
/// the Role), or whose pod does not exist, refuses to start and says why: it would
/// otherwise inject an image it cannot vouch for.
#[test]
fn a_webhook_that_cannot_read_its_own_pod_refuses_to_start() {
    let rt = rt();
    let api = stand_in(&rt, "registry.example.com/si:2.0.0");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let cluster = with(
        in_cluster_env(port_of(&api.url)),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );

    let wrong_pod = with(
        cluster.clone(),
        &[("SECRET_INJECTOR_POD_NAME", "secret-injector-gone")],
    );
    let mut s = Serve::start(&wrong_pod, &[]);
    assert_eq!(
        s.exited(Duration::from_secs(15)).and_then(|s| s.code()),
        Some(2),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text().contains("cannot read this webhook's pod secret-injector-system/secret-injector-gone: pods \"secret-injector-gone\" not found (404 NotFound)"),
        "{}",
        s.log_text()
    );

    // Only the ClusterRole of the manifests, not the Role for pods.
    let docs = crate::manifests::render(&util::repo().join("manifests"));
    let grants = rbac_grants(&docs, NAMESPACE, "secret-injector");
    api.enforce(
        grants
            .into_iter()
            .filter(|g| g.resource != "pods")
            .collect(),
    );
    let mut s = Serve::start(&cluster, &[]);
    assert_eq!(
        s.exited(Duration::from_secs(15)).and_then(|s| s.code()),
        Some(2),
        "{}",
        s.log_text()
    );
    let log = s.log_text();
    assert!(log.contains("is forbidden: User \"system:serviceaccount:secret-injector-system:secret-injector\" cannot get resource \"pods\""), "{log}");
    assert!(
        log.contains("grant `get` on pods in namespace secret-injector-system"),
        "{log}"
    );
}
