//! OpenBao (`bao server -dev` from the test venv), with or without TLS, and the calls
//! that set it up: KV v2 values, policies, `jwt` and `kubernetes` auth.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{free_port_pair, http, venv_bin, wait_http};

/// `bao server -dev` on a free port; killed on drop.
pub struct OpenBao {
    child: Child,
    pub port: u16,
    pub addr: String,
    pub root: String,
    /// Holds the config and the raw audit log ([`OpenBao::issued_secrets`]).
    dir: tempfile::TempDir,
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        Self::start_with(None).await
    }

    /// Dev mode with TLS: OpenBao generates a CA and writes `vault-ca.pem` into `dir`.
    pub async fn start_tls(dir: &std::path::Path) -> OpenBao {
        Self::start_with(Some(dir)).await
    }

    async fn start_with(tls_dir: Option<&std::path::Path>) -> OpenBao {
        for _ in 0..5 {
            if let Some(bao) = Self::try_start_on(free_port_pair(), tls_dir).await {
                return bao;
            }
        }
        panic!("OpenBao did not start");
    }

    /// Start on `port`; `None` if the port was taken meanwhile.
    async fn try_start_on(port: u16, tls_dir: Option<&std::path::Path>) -> Option<OpenBao> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root = "root-token-for-tests".to_string();
        // A raw file audit device (declared in config: OpenBao refuses to enable one
        // through the API): every token it issues and every value it answers, in clear,
        // for the leak checks.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.log");
        let config = dir.path().join("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"raw\" {{\n  options {{\n    file_path = \"{}\"\n    log_raw = \"true\"\n  }}\n}}\n",
                audit.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(venv_bin("bao"));
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={root}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            &format!("-config={}", config.display()),
        ]);
        if let Some(dir) = tls_dir {
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.display()));
        }
        let mut child = cmd
            .env("HOME", std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao");
        let scheme = if tls_dir.is_some() { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        if !wait_http(&format!("{addr}/v1/sys/health"), "OpenBao", &mut child).await {
            return None;
        }
        Some(OpenBao {
            child,
            port,
            addr,
            root,
            dir,
        })
    }

    /// A root-token API call; panics on an error status.
    pub async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let req = http()
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root);
        let req = if body.is_null() { req } else { req.json(&body) };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Enable `jwt` auth at `mount` trusting `public_pem`, with a role per
    /// (role, namespace, service account, policy).
    pub async fn setup_jwt(
        &self,
        mount: &str,
        public_pem: &str,
        roles: &[(&str, &str, &str, &str)],
    ) {
        self.api("POST", &format!("sys/auth/{mount}"), json!({"type": "jwt"}))
            .await;
        self.api(
            "POST",
            &format!("auth/{mount}/config"),
            json!({"jwt_validation_pubkeys": [public_pem]}),
        )
        .await;
        for (role, ns, sa, policy) in roles {
            self.api(
                "POST",
                &format!("auth/{mount}/role/{role}"),
                json!({
                    "role_type": "jwt",
                    "bound_audiences": ["vault"],
                    "bound_subject": format!("system:serviceaccount:{ns}:{sa}"),
                    "user_claim": "sub",
                    "policies": [policy],
                    "token_ttl": "10m",
                }),
            )
            .await;
        }
    }

    /// Enable `kubernetes` auth at `mount` against a TokenReview endpoint, with a role
    /// per (role, namespace, service account, policy).
    pub async fn setup_kubernetes(
        &self,
        mount: &str,
        reviewer_port: u16,
        roles: &[(&str, &str, &str, &str)],
    ) {
        self.api(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({"type": "kubernetes"}),
        )
        .await;
        let any_ca = rcgen::generate_simple_self_signed(vec!["kubernetes".to_string()])
            .unwrap()
            .cert
            .pem();
        self.api(
            "POST",
            &format!("auth/{mount}/config"),
            json!({
                "kubernetes_host": format!("http://127.0.0.1:{reviewer_port}"),
                "kubernetes_ca_cert": any_ca,
                "disable_local_ca_jwt": true,
            }),
        )
        .await;
        for (role, ns, sa, policy) in roles {
            self.api(
                "POST",
                &format!("auth/{mount}/role/{role}"),
                json!({
                    "bound_service_account_names": [sa],
                    "bound_service_account_namespaces": [ns],
                    "audience": "vault",
                    "policies": [policy],
                    "token_ttl": "10m",
                }),
            )
            .await;
        }
    }

    /// One more role on a `jwt` mount set up by [`OpenBao::setup_jwt`], for service
    /// account `sa` in `ns`, with `policies` and, when `no_default_policy`, without
    /// OpenBao's `default` policy.
    pub async fn jwt_role(
        &self,
        mount: &str,
        (role, ns, sa): (&str, &str, &str),
        policies: &[&str],
        no_default_policy: bool,
    ) {
        self.api(
            "POST",
            &format!("auth/{mount}/role/{role}"),
            json!({
                "role_type": "jwt",
                "bound_audiences": ["vault"],
                "bound_subject": format!("system:serviceaccount:{ns}:{sa}"),
                "user_claim": "sub",
                "policies": policies,
                "token_no_default_policy": no_default_policy,
                "token_ttl": "10m",
            }),
        )
        .await;
    }

    /// The paths of the requests OpenBao received from callers other than root, in
    /// order, from its raw audit log (`sys/internal/ui/mounts/secret/team-a/db`).
    pub fn requested_paths(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e["type"] == "request" && e["auth"]["client_token"] != self.root.as_str())
            .filter_map(|e| e["request"]["path"].as_str().map(str::to_string))
            .collect()
    }

    pub async fn policy(&self, name: &str, hcl: &str) {
        self.api(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({"policy": hcl}),
        )
        .await;
    }

    pub async fn kv2_put(&self, path: &str, data: Value) {
        self.api(
            "POST",
            &format!("secret/data/{path}"),
            json!({"data": data}),
        )
        .await;
    }

    /// What OpenBao gave out to callers other than root, from its raw audit log: every
    /// client token it issued (logins, renewals) and every string it answered under a
    /// key that names a credential (`password`, `secret`, `token`, `key`).
    pub fn issued_secrets(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        let mut found = Vec::new();
        for line in log.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if entry["type"] != "response" {
                continue;
            }
            let response = &entry["response"];
            if let Some(t) = response["auth"]["client_token"].as_str() {
                found.push(t.to_string());
            }
            // (root's own calls are the test's setup)
            if entry["auth"]["client_token"] != self.root.as_str() {
                collect_credentials(&response["data"], false, &mut found);
            }
        }
        found.retain(|v| v.len() >= 8 && v != &self.root);
        found.sort();
        found.dedup();
        found
    }

    /// Panics if `text` holds anything [`OpenBao::issued_secrets`] lists, or if
    /// OpenBao issued no token at all (the check would prove nothing).
    pub fn assert_nothing_issued_in(&self, text: &str) {
        let issued = self.issued_secrets();
        assert!(
            !issued.is_empty(),
            "OpenBao issued no token: nothing to look for"
        );
        for v in &issued {
            assert!(
                !text.contains(v.as_str()),
                "a token or value OpenBao issued appears in the output:\n{text}"
            );
        }
    }

    /// Number of tokens that exist (accessors), to see revocation.
    pub async fn token_count(&self) -> usize {
        let v = self.api("LIST", "auth/token/accessors", Value::Null).await;
        v["data"]["keys"].as_array().map_or(0, Vec::len)
    }
}

/// Strings under credential-like keys of `v` (or anywhere below such a key).
fn collect_credentials(v: &Value, under_credential: bool, out: &mut Vec<String>) {
    match v {
        Value::String(s) if under_credential => out.push(s.clone()),
        Value::Array(items) => {
            for item in items {
                collect_credentials(item, under_credential, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let k = k.to_ascii_lowercase();
                let credential = under_credential
                    || ["password", "secret", "token", "key"]
                        .iter()
                        .any(|c| k.contains(c));
                collect_credentials(item, credential, out);
            }
        }
        _ => {}
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
