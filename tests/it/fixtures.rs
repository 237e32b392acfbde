//! What the init-container tests (`file_mode`, `vault`, `aws`, `env_mode`,
//! `dynamic_credentials`, `retries`) share: the secret values, OpenBao and moto set up
//! with them, the manifest and config that `inject -f` gets, the pod's projected tokens,
//! and the injected init container run as a process.
//!
//! The init container is run exactly as `inject -f` writes it, against real OpenBao and
//! moto: mount paths remapped to a temp dir, the projected token written there, the
//! process run with the container's args and env only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::support::{Moto, OpenBao, TokenSigner};
use crate::util::{self, rt};

pub const NS: &str = "team-a";

// Values that must never leave the files: every run's output is searched for them.
pub const DB_PASSWORD: &str = "pw-Vq8#kR2-db-current";
pub const DB_PASSWORD_OLD: &str = "pw-old-7Hs2-db-v1";
pub const API_KEY: &str = "api-key-LmN0pQ-kv1";
pub const CNPG_PASSWORD: &str = "cnpg-Zx9!aa-password";
pub const PLAIN_TOKEN: &str = "plain-token-Y7u6t5";
pub const JWT_SECRET: &str = "deparrow-jwt-Qq1w2e3r";

pub fn all_values() -> [&'static str; 6] {
    [
        DB_PASSWORD,
        DB_PASSWORD_OLD,
        API_KEY,
        CNPG_PASSWORD,
        PLAIN_TOKEN,
        JWT_SECRET,
    ]
}

/// Where nothing listens (the discard port): the address of the store a test does not
/// use.
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// The AWS role of `aws-role-arn` in the web-identity tests.
pub const TEAM_A_ROLE: &str = "arn:aws:iam::123456789012:role/team-a-app";

/// Static keys for moto, for the AWS tests that are not about the pod's identity.
pub const STATIC_AWS_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// The env of a run meant to give up: a 3 s deadline, and errors only in the log, so
/// the output is the one final line (see [`InitRun::gave_up_at_a_3s_deadline`]).
pub const DEADLINE_3S: [(&str, &str); 2] =
    [("SECRET_INJECTOR_DEADLINE", "3s"), ("RUST_LOG", "error")];

/// The volumes the injected pod gets its projected service-account tokens in.
pub const VAULT_TOKEN_VOLUME: &str = "secret-injector-token-vault";
pub const AWS_TOKEN_VOLUME: &str = "secret-injector-token-aws";

/// The pod's projected token for Vault (audience `vault`), for service account `sa` of
/// team-a, signed by `signer`: an entry of [`run_injected`]'s `tokens`.
pub fn vault_token(signer: &TokenSigner, sa: &str) -> (&'static str, String) {
    (VAULT_TOKEN_VOLUME, signer.token(NS, sa, "vault"))
}

/// The pod's projected token for AWS STS (audience `sts.amazonaws.com`).
pub fn aws_token(signer: &TokenSigner, sa: &str) -> (&'static str, String) {
    (AWS_TOKEN_VOLUME, signer.token(NS, sa, "sts.amazonaws.com"))
}

/// OpenBao with jwt auth at `jwt`: role `app` (team-a:app) reads team-a paths, role
/// `other` (team-a:other) reads other paths.
pub async fn bao_with_secrets(signer: &TokenSigner) -> OpenBao {
    let bao = OpenBao::start().await;
    bao.api(
        "POST",
        "sys/mounts/kv1",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .await;
    bao.kv2_put(
        "team-a/db",
        json!({"username": "app", "password": DB_PASSWORD_OLD}),
    )
    .await;
    bao.kv2_put(
        "team-a/db",
        json!({"username": "app", "password": DB_PASSWORD}),
    )
    .await;
    bao.api("POST", "kv1/team-a/api", json!({"key": API_KEY}))
        .await;
    bao.kv2_put("other/db", json!({"password": "not-for-team-a"}))
        .await;
    bao.policy(
        "app",
        "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }\npath \"kv1/team-a/*\" { capabilities = [\"read\"] }",
    )
    .await;
    bao.policy(
        "other",
        "path \"secret/data/other/*\" { capabilities = [\"read\"] }",
    )
    .await;
    bao.setup_jwt(
        "jwt",
        &signer.public_pem,
        &[("app", NS, "app", "app"), ("other", NS, "other", "other")],
    )
    .await;
    bao
}

/// The arrange of the Vault-only tests: a runtime, the signer of the pod's tokens, and
/// OpenBao as [`bao_with_secrets`] sets it up.
pub fn runtime_signer_and_bao() -> (Runtime, TokenSigner, OpenBao) {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    (rt, signer, bao)
}

/// moto with a secret per (name, SecretString).
pub async fn moto_with_secrets(secrets: &[(&str, &str)]) -> Moto {
    let moto = Moto::start().await;
    for (name, value) in secrets {
        moto.create(name, value).await;
    }
    moto
}

/// The result of running the injected init container.
pub struct InitRun {
    pub out: Output,
    pub elapsed: Duration,
    pub root: tempfile::TempDir,
    /// mountPath in the container -> directory on this machine
    pub mounts: BTreeMap<String, PathBuf>,
    /// The projected tokens the run was given: never to be printed either.
    pub tokens: Vec<String>,
}

/// What the cloud test servers issue as access tokens (`support/cloud.rs`).
pub const ISSUED_TOKEN_MARK: &str = "test-access-token";

impl InitRun {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).to_string()
    }

    pub fn output_text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            self.stderr()
        )
    }

    pub fn files_dir(&self) -> &Path {
        &self.mounts["/secret-injector/files"]
    }

    /// Where env mode writes `env.json` and the copied binary.
    pub fn env_dir(&self) -> &Path {
        &self.mounts["/secret-injector/env"]
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.files_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.stderr()))
    }

    pub fn mode(&self, name: &str) -> u32 {
        std::fs::metadata(self.files_dir().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// The names in the files directory, sorted.
    pub fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.files_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    pub fn last_line(&self) -> String {
        self.stderr().lines().last().unwrap_or_default().to_string()
    }

    /// A run with `SECRET_INJECTOR_DEADLINE=3s` that kept retrying and then gave up:
    /// exit code 1, one line, after about the deadline. Returns that line.
    pub fn gave_up_at_a_3s_deadline(&self) -> String {
        assert_eq!(self.out.status.code(), Some(1));
        let stderr = self.stderr();
        assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
        assert!(
            self.elapsed >= Duration::from_secs(2) && self.elapsed < Duration::from_secs(15),
            "{:?}",
            self.elapsed
        );
        stderr
    }

    /// A permanent failure: exit code 1 and no retry. Returns the last line.
    pub fn failed_without_retry(&self) -> String {
        assert_eq!(self.out.status.code(), Some(1), "{}", self.stderr());
        assert!(
            !self.stderr().contains("retrying"),
            "a permanent error must not retry:\n{}",
            self.stderr()
        );
        self.last_line()
    }

    /// No secret value, projected token or issued access token in anything the run
    /// printed (at `RUST_LOG=trace` for every crate: ours, the HTTP stack, the SDKs).
    pub fn assert_no_values(&self) {
        let text = self.output_text();
        for v in all_values() {
            assert!(
                !text.contains(v),
                "a secret value leaked into the output:\n{text}"
            );
        }
        for token in &self.tokens {
            // The signature alone identifies the token.
            let signature = token.rsplit('.').next().unwrap_or(token);
            assert!(
                !text.contains(signature),
                "a projected token leaked into the output:\n{text}"
            );
        }
        assert!(
            !text.contains(ISSUED_TOKEN_MARK),
            "an access token leaked into the output:\n{text}"
        );
    }
}

/// `inject -f` the manifest with `config`, then run its init container as a process.
/// `tokens` maps a volume name to the token file content to put in it.
pub fn run_injected(
    manifest: &str,
    config: &str,
    tokens: &[(&str, String)],
    extra_env: &[(&str, &str)],
) -> InitRun {
    let mut prepared = prepare_injected(manifest, config, tokens);
    assert_eq!(prepared.container["name"], "secret-injector-init");
    for (k, v) in extra_env {
        prepared.cmd.env(k, v);
    }
    let start = Instant::now();
    let out = prepared.cmd.stdin(Stdio::null()).output().unwrap();
    InitRun {
        out,
        elapsed: start.elapsed(),
        root: prepared.root,
        mounts: prepared.mounts,
        tokens: tokens.iter().map(|(_, t)| t.clone()).collect(),
    }
}

/// The injected container (init or refresh sidecar), ready to run as a process: its
/// mounts remapped to directories under a temp root, its args and env only.
pub struct Prepared {
    pub cmd: std::process::Command,
    pub container: Value,
    pub root: tempfile::TempDir,
    /// mountPath in the container -> directory on this machine
    pub mounts: BTreeMap<String, PathBuf>,
}

/// `inject -f` the manifest with `config`, and prepare its injected container.
pub fn prepare_injected(manifest: &str, config: &str, tokens: &[(&str, String)]) -> Prepared {
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("config.yaml");
    std::fs::write(&cfg, config).unwrap();
    let injected = {
        use std::io::Write;
        let mut child = util::bin()
            .args(["inject", "-f", "-", "--config", cfg.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "inject: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let docs = webhook::inject::parse_documents(&injected).unwrap();
    let workload = docs
        .iter()
        .find(|d| d["kind"] != "ServiceAccount")
        .expect("a workload");
    let tpl = if workload["kind"] == "Pod" {
        workload
    } else {
        &workload["spec"]["template"]
    };
    let init = tpl["spec"]["initContainers"][0].clone();
    let args: Vec<String> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();

    // Every mount of the container becomes a directory under the temp root.
    let mut mounts = BTreeMap::new();
    for m in init["volumeMounts"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((_, token)) = tokens.iter().find(|(v, _)| *v == name) {
            std::fs::write(dir.join("token"), token).unwrap();
        }
        mounts.insert(m["mountPath"].as_str().unwrap().to_string(), dir);
    }
    let remap = |s: &str| {
        let mut s = s.to_string();
        // longest mount paths first
        let mut paths: Vec<(&String, &PathBuf)> = mounts.iter().collect();
        paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (path, dir) in paths {
            s = s.replace(path.as_str(), dir.to_str().unwrap());
        }
        s
    };
    let mut cmd = util::agent();
    cmd.env_clear();
    for e in init["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = match (
            &e["value"],
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Value::String(v), _) => remap(v),
            (_, Some("metadata.namespace")) => NS.to_string(),
            (_, Some("metadata.name")) => "app-7d9c-x2x4z".to_string(),
            other => panic!("unexpected env {name}: {other:?}"),
        };
        cmd.env(name, value);
    }
    cmd.env("RUST_LOG", "trace");
    cmd.args(args.iter().map(|a| remap(a)));
    Prepared {
        cmd,
        container: init,
        root,
        mounts,
    }
}

/// The webhook's config: Vault at `vault_addr` with jwt auth at `jwt`, AWS at
/// `aws_endpoint`.
pub fn config(vault_addr: &str, aws_endpoint: &str) -> String {
    format!(
        "vault:\n  address: {vault_addr}\n  auth_method: jwt\n  auth_path: jwt\naws:\n  region: us-east-1\n  endpoint_url: {aws_endpoint}\n"
    )
}

/// [`config`] for a test of Vault alone (AWS is [`NOWHERE`]).
pub fn vault_only_config(vault_addr: &str) -> String {
    config(vault_addr, NOWHERE)
}

/// [`config`] for a test of AWS alone (Vault is [`NOWHERE`]).
pub fn aws_only_config(aws_endpoint: &str) -> String {
    config(NOWHERE, aws_endpoint)
}

/// A Deployment `app` in team-a, run as service account `sa` (uid 1000), with a
/// `secret-injector.io/<k>: <v>` annotation per (k, v).
pub fn deployment(annotations: &[(&str, &str)], sa: &str) -> String {
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        ann.insert(
            format!("secret-injector.io/{k}"),
            Value::String(v.to_string()),
        );
    }
    serde_json::to_string(&json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}, "annotations": ann},
                "spec": {
                    "serviceAccountName": sa,
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                    "containers": [{"name": "app", "image": "app:1", "command": ["/app"]}],
                },
            },
        },
    }))
    .unwrap()
}

/// The most common manifest: service account `app` asks for one file, `db`, with
/// team-a's database password from Vault.
pub fn db_password_deployment() -> String {
    deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    )
}
