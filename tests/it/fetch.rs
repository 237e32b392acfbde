//! The injected init container, run exactly as `inject -f` writes it, against real
//! OpenBao and moto: mount paths remapped to a temp dir, the projected token written
//! there, the process run with the container's args and env only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Fault, Moto, OpenBao, Postgres, TcpProxy, ThrottleProxy, TokenReviewServer, TokenSigner,
};
use crate::util;

const NS: &str = "team-a";

// Values that must never leave the files.
const DB_PASSWORD: &str = "pw-Vq8#kR2-db-current";
const DB_PASSWORD_OLD: &str = "pw-old-7Hs2-db-v1";
const API_KEY: &str = "api-key-LmN0pQ-kv1";
const CNPG_PASSWORD: &str = "cnpg-Zx9!aa-password";
const PLAIN_TOKEN: &str = "plain-token-Y7u6t5";
const JWT_SECRET: &str = "deparrow-jwt-Qq1w2e3r";

static VERSION_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn all_values() -> [&'static str; 6] {
    [
        DB_PASSWORD,
        DB_PASSWORD_OLD,
        API_KEY,
        CNPG_PASSWORD,
        PLAIN_TOKEN,
        JWT_SECRET,
    ]
}

use crate::util::rt;

/// OpenBao with jwt auth at `jwt`: role `app` (team-a:app) reads team-a paths, role
/// `other` (team-a:other) reads other paths.
async fn bao_with_secrets(signer: &TokenSigner) -> OpenBao {
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

/// The result of running the injected init container.
struct InitRun {
    out: Output,
    elapsed: Duration,
    root: tempfile::TempDir,
    /// mountPath in the container -> directory on this machine
    mounts: BTreeMap<String, PathBuf>,
}

impl InitRun {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).to_string()
    }

    fn output_text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            self.stderr()
        )
    }

    fn files_dir(&self) -> &Path {
        &self.mounts["/secret-injector/files"]
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.files_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.stderr()))
    }

    fn mode(&self, name: &str) -> u32 {
        std::fs::metadata(self.files_dir().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn last_line(&self) -> String {
        self.stderr().lines().last().unwrap_or_default().to_string()
    }

    /// A run with `SECRET_INJECTOR_DEADLINE=3s` that kept retrying and then gave up:
    /// exit code 1, one line, after about the deadline. Returns that line.
    fn gave_up_at_a_3s_deadline(&self) -> String {
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
    fn failed_without_retry(&self) -> String {
        assert_eq!(self.out.status.code(), Some(1), "{}", self.stderr());
        assert!(
            !self.stderr().contains("retrying"),
            "a permanent error must not retry:\n{}",
            self.stderr()
        );
        self.last_line()
    }

    fn assert_no_values(&self) {
        let text = self.output_text();
        for v in all_values() {
            assert!(
                !text.contains(v),
                "a secret value leaked into the output:\n{text}"
            );
        }
    }
}

/// `inject -f` the manifest with `config`, then run its init container as a process.
/// `tokens` maps a volume name to the token file content to put in it.
fn run_injected(
    manifest: &str,
    config: &str,
    tokens: &[(&str, String)],
    extra_env: &[(&str, &str)],
) -> InitRun {
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
    let docs = secret_injector::webhook::inject::parse_documents(&injected).unwrap();
    let workload = docs
        .iter()
        .find(|d| d["kind"] != "ServiceAccount")
        .expect("a workload");
    let tpl = if workload["kind"] == "Pod" {
        workload
    } else {
        &workload["spec"]["template"]
    };
    let init = &tpl["spec"]["initContainers"][0];
    assert_eq!(init["name"], "secret-injector-init");
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
    let mut cmd = util::bin();
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
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd
        .args(args.iter().map(|a| remap(a)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    InitRun {
        out,
        elapsed: start.elapsed(),
        root,
        mounts,
    }
}

fn config(vault_addr: &str, aws_endpoint: &str) -> String {
    format!(
        "vault:\n  address: {vault_addr}\n  auth_method: jwt\n  auth_path: jwt\naws:\n  region: us-east-1\n  endpoint_url: {aws_endpoint}\n"
    )
}

fn deployment(annotations: &[(&str, &str)], sa: &str) -> String {
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

#[test]
fn init_fetches_from_openbao_and_moto_with_the_pods_identity() {
    let rt = rt();
    let signer = TokenSigner::new();
    let (bao, moto, arn) = rt.block_on(async {
        let bao = bao_with_secrets(&signer).await;
        let moto = Moto::start().await;
        let arn = moto
            .create(
                "prod/cnpg/postgres-credentials",
                &json!({"username": "app", "password": CNPG_PASSWORD}).to_string(),
            )
            .await;
        moto.create("team-a/token", PLAIN_TOKEN).await;
        moto.create("team-a/rotated", &json!({"v": "first-version"}).to_string())
            .await;
        let v2 = moto
            .put(
                "team-a/rotated",
                &json!({"v": "second-version"}).to_string(),
            )
            .await;
        moto.put("team-a/rotated", &json!({"v": "third-version"}).to_string())
            .await;
        VERSION_ID.set(v2).unwrap();
        moto.create(
            "deparrow/production/secrets",
            &json!({"DEPARROW_JWT_SECRET": JWT_SECRET, "REDIS_PASSWORD": "r"}).to_string(),
        )
        .await;
        (bao, moto, arn)
    });
    let tokens_before = rt.block_on(bao.token_count());
    let arn_ref = format!("aws:{arn}#password");
    let by_id = format!(
        "aws:team-a/rotated?version-id={}#v",
        VERSION_ID.get().unwrap()
    );
    let manifest = deployment(
        &[
            ("secret-db-password", "vault:secret/data/team-a/db#password"),
            (
                "secret-db-old",
                "vault:secret/data/team-a/db?version=1#password",
            ),
            ("secret-db", "vault:secret/data/team-a/db"),
            ("secret-api-key", "vault:kv1/team-a/api#key"),
            ("secret-pgpass", "aws:prod/cnpg/postgres-credentials"),
            (
                "template-pgpass",
                "cluster-example-rw:5432:app:{{ .username }}:{{ .password }}",
            ),
            ("secret-cnpg-by-arn", &arn_ref),
            ("secret-token", "aws:team-a/token"),
            (
                "secret-jwt",
                "aws:deparrow/production/secrets#DEPARROW_JWT_SECRET",
            ),
            (
                "template-config.yaml",
                "db: {{ secrets['db-password'] }}\napi: {{ secrets['api-key'] }}\n",
            ),
            ("file-mode-config.yaml", "0440"),
            ("aws-role-arn", "arn:aws:iam::123456789012:role/team-a-app"),
            ("secret-rotated-current", "aws:team-a/rotated#v"),
            (
                "secret-rotated-previous",
                "aws:team-a/rotated?version-stage=AWSPREVIOUS#v",
            ),
            ("secret-rotated-by-id", &by_id),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, &moto.url),
        &[
            (
                "secret-injector-token-vault",
                signer.token(NS, "app", "vault"),
            ),
            (
                "secret-injector-token-aws",
                signer.token(NS, "app", "sts.amazonaws.com"),
            ),
        ],
        &[],
    );
    assert!(run.out.status.success(), "init failed:\n{}", run.stderr());

    assert_eq!(run.file("db-password"), DB_PASSWORD);
    assert_eq!(run.file("db-old"), DB_PASSWORD_OLD, "?version=1");
    assert_eq!(run.file("api-key"), API_KEY, "KV v1");
    let whole: Value = serde_json::from_str(&run.file("db")).unwrap();
    assert_eq!(
        whole,
        json!({"username": "app", "password": DB_PASSWORD}),
        "whole KV v2 map"
    );
    assert_eq!(
        run.file("pgpass"),
        format!("cluster-example-rw:5432:app:app:{CNPG_PASSWORD}")
    );
    assert_eq!(run.file("cnpg-by-arn"), CNPG_PASSWORD);
    assert_eq!(
        run.file("token"),
        PLAIN_TOKEN,
        "a plain SecretString is written whole"
    );
    assert_eq!(run.file("jwt"), JWT_SECRET);
    assert_eq!(run.file("rotated-current"), "third-version");
    assert_eq!(
        run.file("rotated-previous"),
        "second-version",
        "?version-stage=AWSPREVIOUS"
    );
    assert_eq!(run.file("rotated-by-id"), "second-version", "?version-id=");
    assert_eq!(
        run.file("config.yaml"),
        format!("db: {DB_PASSWORD}\napi: {API_KEY}\n")
    );
    assert_eq!(
        run.mode("db-password"),
        0o400,
        "runAsUser is known: owner-only"
    );
    assert_eq!(run.mode("config.yaml"), 0o440);
    // no temp files left behind
    let names: Vec<String> = std::fs::read_dir(run.files_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // Logged at trace, yet no value anywhere; the Vault token is revoked.
    run.assert_no_values();
    assert!(run.stderr().contains("secrets ready"), "{}", run.stderr());
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before,
        "token not revoked"
    );
    drop(run.root);
}

#[test]
fn a_token_for_another_service_account_is_refused_at_once() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "other", "vault"),
        )],
        &[],
    );
    let last = run.failed_without_retry();
    assert!(last.starts_with("secret-injector init: "), "{last}");
    assert!(
        last.contains("vault role `app`"),
        "names the identity: {last}"
    );
    assert!(last.contains("refused"), "{last}");
    assert!(run.elapsed < Duration::from_secs(5));
    assert!(
        std::fs::read_dir(run.files_dir()).unwrap().next().is_none(),
        "no files"
    );
    run.assert_no_values();

    // The role it does match cannot read team-a's path: 403, named.
    let manifest = deployment(
        &[
            ("secret-db", "vault:secret/data/team-a/db#password"),
            ("vault-role", "other"),
        ],
        "other",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "other", "vault"),
        )],
        &[],
    );
    assert_eq!(run.out.status.code(), Some(1));
    let last = run.last_line();
    assert!(
        last.contains("permission denied") && last.contains("vault role `other`"),
        "{last}"
    );
    assert!(last.contains("vault:secret/data/team-a/db"), "{last}");
}

#[test]
fn store_down_at_start_then_up_heals_by_retrying() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let _guard = rt.enter();
    let proxy = TcpProxy::start(bao.port, Duration::from_secs(2), Duration::ZERO);
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(
            &format!("http://127.0.0.1:{}", proxy.port),
            "http://127.0.0.1:9",
        ),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert!(run.stderr().contains("retrying"), "{}", run.stderr());
    assert!(run.elapsed >= Duration::from_secs(2));
    assert_eq!(run.file("db"), DB_PASSWORD);
    run.assert_no_values();
}

#[test]
fn store_down_past_the_deadline_fails_with_one_clear_line() {
    let signer = TokenSigner::new();
    let dead = format!("http://127.0.0.1:{}", util::free_port());
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&dead, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[("SECRET_INJECTOR_DEADLINE", "3s"), ("RUST_LOG", "error")],
    );
    let stderr = run.gave_up_at_a_3s_deadline();
    assert!(
        stderr.starts_with("secret-injector init: gave up after 3s: login to vault role `app`"),
        "{stderr}"
    );
}

#[test]
fn missing_key_and_bad_token_fail_fast_and_write_nothing() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let tokens_before = rt.block_on(bao.token_count());
    let manifest = deployment(
        &[
            ("secret-a", "vault:secret/data/team-a/db#password"),
            ("secret-b", "vault:secret/data/team-a/db#passwd"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[],
    );
    assert_eq!(run.out.status.code(), Some(1));
    let last = run.last_line();
    assert!(
        last.contains("vault:secret/data/team-a/db#passwd") && last.contains("no key `passwd`"),
        "{last}"
    );
    assert!(
        last.contains("password, username"),
        "lists the keys that exist: {last}"
    );
    assert!(
        std::fs::read_dir(run.files_dir()).unwrap().next().is_none(),
        "all or nothing"
    );
    run.assert_no_values();
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before,
        "the token of a failed run is revoked"
    );

    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            "this is not a token".to_string(),
        )],
        &[],
    );
    assert_eq!(run.out.status.code(), Some(1));
    assert!(run.last_line().contains("not a JWT"), "{}", run.last_line());
    assert!(run.elapsed < Duration::from_secs(5));
}

/// Throttling, and a 503 page without an AWS error code (a load balancer's), are
/// transient: retried with backoff, without a storm.
#[test]
fn aws_throttling_and_5xx_are_retried_with_backoff() {
    let rt = rt();
    let moto = rt.block_on(async {
        let moto = Moto::start().await;
        moto.create("team-a/one", &json!({"k": CNPG_PASSWORD}).to_string())
            .await;
        moto.create("team-a/two", PLAIN_TOKEN).await;
        moto
    });
    let manifest = deployment(
        &[
            ("secret-one", "aws:team-a/one#k"),
            ("secret-two", "aws:team-a/two"),
        ],
        "app",
    );
    for (fault, marker) in [
        (Fault::Throttling, "ThrottlingException"),
        (Fault::Unavailable, "HTTP 503 without an AWS error code"),
    ] {
        let proxy = rt.block_on(ThrottleProxy::start_with(moto.url.clone(), 3, fault));
        let _guard = rt.enter();
        let run = run_injected(
            &manifest,
            &config(
                "http://127.0.0.1:9",
                &format!("http://127.0.0.1:{}", proxy.port),
            ),
            &[],
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        );
        assert!(run.out.status.success(), "{marker}: {}", run.stderr());
        assert_eq!(run.file("one"), CNPG_PASSWORD);
        assert_eq!(run.file("two"), PLAIN_TOKEN);
        let seen = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            seen >= 4,
            "{marker}: 3 refused + at least one real request, saw {seen}"
        );
        assert!(
            seen <= 8,
            "{marker}: no retry storm: {seen} requests for 2 secrets"
        );
        let stderr = run.stderr();
        assert!(
            stderr.contains(marker) && stderr.contains("retrying"),
            "{stderr}"
        );
        run.assert_no_values();
    }
    drop(moto);
}

#[test]
fn missing_aws_secret_is_permanent_and_named() {
    let rt = rt();
    let moto = rt.block_on(Moto::start());
    let manifest = deployment(&[("secret-x", "aws:team-a/does-not-exist#k")], "app");
    let run = run_injected(
        &manifest,
        &config("http://127.0.0.1:9", &moto.url),
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("aws:team-a/does-not-exist") && last.contains("ResourceNotFoundException"),
        "{last}"
    );
}

/// moto enforcing IAM. A role that may `GetSecretValue` but not `BatchGetSecretValue`
/// (how many IRSA policies are written) still gets its secrets: the refused batch
/// falls back to single reads at once. A role that may not read fails fast with
/// AccessDenied naming the role, and writes nothing.
#[test]
fn aws_access_is_the_roles_own() {
    let rt = rt();
    let signer = TokenSigner::new();
    let secrets = [("team-a/one", CNPG_PASSWORD), ("team-a/two", PLAIN_TOKEN)];
    let aws_token = || {
        [(
            "secret-injector-token-aws",
            signer.token(NS, "app", "sts.amazonaws.com"),
        )]
    };

    let (moto, arn) = rt.block_on(Moto::start_enforcing(
        "team-a-app",
        "secretsmanager:GetSecretValue",
        &secrets,
    ));
    let manifest = deployment(
        &[
            ("secret-one", "aws:team-a/one"),
            ("secret-two", "aws:team-a/two"),
            ("aws-role-arn", &arn),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config("http://127.0.0.1:9", &moto.url),
        &aws_token(),
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("one"), CNPG_PASSWORD);
    assert_eq!(run.file("two"), PLAIN_TOKEN);
    let stderr = run.stderr();
    // moto answers an IAM refusal with a query-protocol XML body, which carries no
    // JSON error code: the status is what the SDK has (real AWS says AccessDeniedException).
    assert!(
        stderr.contains("BatchGetSecretValue failed; fetching one by one")
            && (stderr.contains("HTTP 403") || stderr.contains("AccessDenied")),
        "the refused batch is logged and falls back:\n{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "a refusal is not retried:\n{stderr}"
    );
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    run.assert_no_values();
    drop(moto);

    let (moto, arn) = rt.block_on(Moto::start_enforcing(
        "team-a-lister",
        "secretsmanager:ListSecrets",
        &secrets[..1],
    ));
    let manifest = deployment(
        &[("secret-one", "aws:team-a/one"), ("aws-role-arn", &arn)],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config("http://127.0.0.1:9", &moto.url),
        &aws_token(),
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("aws:team-a/one")
            && (last.contains("HTTP 403") || last.contains("AccessDenied"))
            && last.contains(&arn),
        "names the reference, the cause and the role: {last}"
    );
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert_eq!(
        std::fs::read_dir(run.files_dir()).unwrap().count(),
        0,
        "nothing written"
    );
    run.assert_no_values();
}

#[test]
fn kubernetes_auth_through_token_review() {
    let rt = rt();
    let signer = TokenSigner::new();
    let _guard = rt.enter();
    let (bao, reviewer) = rt.block_on(async {
        let bao = bao_with_secrets(&signer).await;
        let reviewer = TokenReviewServer::start(&signer.public_pem).await;
        bao.setup_kubernetes("kubernetes", reviewer.port, &[("app", NS, "app", "app")])
            .await;
        (bao, reviewer)
    });
    // The default config: kubernetes auth at `kubernetes`, role = service account name.
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let config = format!("vault:\n  address: {}\n", bao.addr);
    let run = run_injected(
        &manifest,
        &config,
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD);
    assert!(
        reviewer.reviews.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "OpenBao asked the TokenReview API"
    );
    run.assert_no_values();

    // A token signed by someone else is refused by the TokenReview: permanent.
    let forger = TokenSigner::new();
    let run = run_injected(
        &manifest,
        &config,
        &[(
            "secret-injector-token-vault",
            forger.token(NS, "app", "vault"),
        )],
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("login to vault role `app` via auth/kubernetes"),
        "{last}"
    );
}

#[test]
fn vault_over_tls_trusts_the_configured_ca_only() {
    let rt = rt();
    let signer = TokenSigner::new();
    let tls_dir = tempfile::tempdir().unwrap();
    let bao = rt.block_on(async {
        let bao = OpenBao::start_tls(tls_dir.path()).await;
        bao.kv2_put("team-a/db", json!({"password": DB_PASSWORD}))
            .await;
        bao.policy(
            "app",
            "path \"secret/data/team-a/*\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.setup_jwt("jwt", &signer.public_pem, &[("app", NS, "app", "app")])
            .await;
        bao
    });
    let ca = tls_dir.path().join("vault-ca.pem");
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let token = [(
        "secret-injector-token-vault",
        signer.token(NS, "app", "vault"),
    )];
    // vault.ca_cert is read by the webhook and handed to the init container as PEM.
    let with_ca = format!(
        "vault:\n  address: {}\n  auth_method: jwt\n  auth_path: jwt\n  ca_cert: {}\n",
        bao.addr,
        ca.display()
    );
    let run = run_injected(&manifest, &with_ca, &token, &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD);
    run.assert_no_values();

    // Without the CA the certificate is not trusted: a permanent, explained failure.
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &token,
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("certificate") && last.contains("vault.ca_cert"),
        "{last}"
    );
}

#[test]
fn env_mode_loads_variables_into_the_app_process_only() {
    let rt = rt();
    let signer = TokenSigner::new();
    let (bao, moto) = rt.block_on(async {
        let bao = bao_with_secrets(&signer).await;
        let moto = Moto::start().await;
        moto.create(
            "deparrow/production/secrets",
            &json!({"DEPARROW_JWT_SECRET": JWT_SECRET, "POSTGRES_PASSWORD": CNPG_PASSWORD})
                .to_string(),
        )
        .await;
        (bao, moto)
    });
    let manifest = deployment(
        &[
            ("env-from", "aws:deparrow/production/secrets"),
            ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
            ("aws-role-arn", "arn:aws:iam::123456789012:role/deparrow"),
        ],
        "app",
    );
    assert!(all_values().iter().all(|v| !manifest.contains(v)));
    let run = run_injected(
        &manifest,
        &config(&bao.addr, &moto.url),
        &[
            (
                "secret-injector-token-vault",
                signer.token(NS, "app", "vault"),
            ),
            (
                "secret-injector-token-aws",
                signer.token(NS, "app", "sts.amazonaws.com"),
            ),
        ],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    run.assert_no_values();
    let env_dir = &run.mounts["/secret-injector/env"];
    let copied = env_dir.join("bin/secret-injector");
    assert!(
        copied.exists(),
        "the binary is copied for the app container"
    );
    let mode = std::fs::metadata(env_dir.join("env.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);

    // What the wrapped container runs: exec -- <command>, here /usr/bin/env.
    let out = std::process::Command::new(&copied)
        .args([
            "exec",
            "--env-file",
            env_dir.join("env.json").to_str().unwrap(),
            "--",
            "/usr/bin/env",
        ])
        .env_clear()
        .env("KEPT", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(
        env.contains(&format!("DEPARROW_JWT_SECRET={JWT_SECRET}")),
        "env-from key missing"
    );
    assert!(env.contains(&format!("POSTGRES_PASSWORD={CNPG_PASSWORD}")));
    assert!(
        env.contains(&format!("DB_PASSWORD={DB_PASSWORD}")),
        "env-<VAR> missing"
    );
    assert!(env.contains("KEPT=1"), "the container's own env is kept");

    // Exit codes pass through, and a missing program is a clear error.
    let status = std::process::Command::new(&copied)
        .args([
            "exec",
            "--env-file",
            env_dir.join("env.json").to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "exit 7",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let out = std::process::Command::new(&copied)
        .args([
            "exec",
            "--env-file",
            env_dir.join("env.json").to_str().unwrap(),
            "--",
            "/nonexistent/app",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/app"), "{err}");
    assert!(all_values().iter().all(|v| !err.contains(v)));
}

#[test]
fn missing_web_identity_token_is_permanent() {
    let rt = rt();
    let moto = rt.block_on(Moto::start());
    let manifest = deployment(
        &[
            ("secret-x", "aws:team-a/x#k"),
            ("aws-role-arn", "arn:aws:iam::123456789012:role/team-a-app"),
        ],
        "app",
    );
    // no token written into the projected volume
    let run = run_injected(
        &manifest,
        &config("http://127.0.0.1:9", &moto.url),
        &[],
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("no usable AWS credentials") && last.contains("role/team-a-app"),
        "{last}"
    );
    assert_eq!(
        run.stderr()
            .lines()
            .filter(|l| l.starts_with("secret-injector init:"))
            .count(),
        1
    );
    assert!(run.elapsed < Duration::from_secs(10));
}

/// Vault dynamic database credentials from a real PostgreSQL, as the migration Job
/// example asks for them: one lease for the whole path (`#username` and `#password` and
/// the template come from one read), credentials that log in, and the Vault token kept
/// (revoking it would revoke the lease) while no value reaches the output.
#[test]
fn dynamic_database_credentials_log_in_to_postgres() {
    let rt = rt();
    let signer = TokenSigner::new();
    let (bao, pg) = rt.block_on(async {
        let pg = Postgres::start().await;
        let bao = OpenBao::start().await;
        bao.api("POST", "sys/mounts/database", json!({"type": "database"}))
            .await;
        bao.api(
            "POST",
            "database/config/pg",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                    pg.port
                ),
                "username": "postgres",
                "password": pg.superuser_password,
                "allowed_roles": "migrations",
            }),
        )
        .await;
        bao.api(
            "POST",
            "database/roles/migrations",
            json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": "1h",
            }),
        )
        .await;
        bao.policy(
            "migrations",
            "path \"database/creds/migrations\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.setup_jwt(
            "jwt",
            &signer.public_pem,
            &[("migrations", NS, "migrations", "migrations")],
        )
        .await;
        (bao, pg)
    });
    let tokens_before = rt.block_on(bao.token_count());
    let manifest = deployment(
        &[
            ("vault-role", "migrations"),
            ("secret-db-creds", "vault:database/creds/migrations"),
            ("secret-db-user", "vault:database/creds/migrations#username"),
            (
                "secret-db-password",
                "vault:database/creds/migrations#password",
            ),
            (
                "template-database-url",
                &format!(
                    "postgresql://{{{{ secrets['db-creds'].username }}}}:{{{{ secrets['db-creds'].password }}}}@127.0.0.1:{}/postgres",
                    pg.port
                ),
            ),
        ],
        "migrations",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "migrations", "vault"),
        )],
        &[],
    );
    assert!(run.out.status.success(), "init failed:\n{}", run.stderr());

    let user = run.file("db-user");
    let password = run.file("db-password");
    // (assertions compare without printing the credentials)
    assert!(user.starts_with("v-"), "not a user Vault created");
    let whole: Value = serde_json::from_str(&run.file("db-creds")).unwrap();
    assert!(
        whole["username"].as_str() == Some(user.as_str())
            && whole["password"].as_str() == Some(password.as_str()),
        "one read, one lease: every file holds the same credentials"
    );
    assert!(
        run.file("database-url")
            == format!(
                "postgresql://{user}:{password}@127.0.0.1:{}/postgres",
                pg.port
            ),
        "the template renders the same credentials"
    );

    // The credentials are real, and the server really checks passwords.
    assert!(
        pg.psql(&user, &password, "SELECT current_user").as_deref() == Ok(user.as_str()),
        "the issued credentials log in"
    );
    assert!(
        pg.psql(&user, "not-the-password", "SELECT 1").is_err(),
        "password auth is on"
    );

    // The lease is alive: the token that holds it was kept, not revoked.
    let leases = rt.block_on(bao.api(
        "LIST",
        "sys/leases/lookup/database/creds/migrations",
        Value::Null,
    ));
    assert_eq!(
        leases["data"]["keys"].as_array().map(Vec::len),
        Some(1),
        "{leases}"
    );
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before + 1,
        "the token holding the lease is kept"
    );

    let text = run.output_text();
    assert!(
        !text.contains(&password),
        "the dynamic password leaked into the output:\n{text}"
    );
    assert!(run.stderr().contains("secrets ready"), "{}", run.stderr());
}

/// An unreachable STS is reported as such (not as Secrets Manager), retried until the
/// deadline, in one line naming the role.
#[test]
fn unreachable_sts_is_named_and_retried_until_the_deadline() {
    let signer = TokenSigner::new();
    let dead = format!("http://127.0.0.1:{}", util::free_port());
    let manifest = deployment(
        &[
            ("secret-x", "aws:team-a/x#k"),
            ("aws-role-arn", "arn:aws:iam::123456789012:role/team-a-app"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config("http://127.0.0.1:9", &dead),
        &[(
            "secret-injector-token-aws",
            signer.token(NS, "app", "sts.amazonaws.com"),
        )],
        &[("SECRET_INJECTOR_DEADLINE", "3s"), ("RUST_LOG", "error")],
    );
    let stderr = run.gave_up_at_a_3s_deadline();
    assert!(
        stderr.starts_with("secret-injector init: gave up after 3s: aws:team-a/x: cannot reach STS for credentials as AWS role arn:aws:iam::123456789012:role/team-a-app (web identity)"),
        "{stderr}"
    );
}

/// A file may be named like another file's temp name under the old scheme
/// (`.a.secret-injector-tmp` beside `a`): each keeps its own value and mode.
#[test]
fn a_file_named_like_a_temp_file_does_not_take_over_another() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let manifest = deployment(
        &[
            ("secret-a", "vault:secret/data/team-a/db#password"),
            ("secret-.a.secret-injector-tmp", "vault:kv1/team-a/api#key"),
            ("file-mode-.a.secret-injector-tmp", "0444"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&bao.addr, "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("a"), DB_PASSWORD);
    assert_eq!(run.mode("a"), 0o400, "a's own mode");
    assert_eq!(run.file(".a.secret-injector-tmp"), API_KEY);
    assert_eq!(run.mode(".a.secret-injector-tmp"), 0o444);
    let mut names: Vec<String> = std::fs::read_dir(run.files_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, [".a.secret-injector-tmp", "a"], "no temp file left");
    run.assert_no_values();
}

/// `env-from` loads the keys a secret's writer chose: a loader variable among them
/// (`LD_PRELOAD`) fails init with one line naming it and the fix, and nothing is
/// written; the pod's `env-from-allow` lets it through.
#[test]
fn env_from_refuses_loader_variables_unless_the_pod_allows_them() {
    const PRELOAD: &str = "/nonexistent/preload-canary-Zq7.so";
    let rt = rt();
    let moto = rt.block_on(async {
        let moto = Moto::start().await;
        moto.create(
            "team-a/env",
            &json!({"POSTGRES_PASSWORD": CNPG_PASSWORD, "LD_PRELOAD": PRELOAD}).to_string(),
        )
        .await;
        moto
    });
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let cfg = config("http://127.0.0.1:9", &moto.url);

    let manifest = deployment(&[("env-from", "aws:team-a/env")], "app");
    let run = run_injected(&manifest, &cfg, &[], &aws_env);
    let last = run.failed_without_retry();
    assert!(
        last.starts_with(
            "secret-injector init: aws:team-a/env: key `LD_PRELOAD` is a loader variable"
        ) && last.contains(
            "add it to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: LD_PRELOAD)"
        ),
        "{last}"
    );
    assert!(
        !run.output_text().contains(PRELOAD),
        "a value in the output"
    );
    run.assert_no_values();
    let env_dir = &run.mounts["/secret-injector/env"];
    assert_eq!(
        std::fs::read_dir(env_dir).unwrap().count(),
        0,
        "no env file, no binary"
    );

    let manifest = deployment(
        &[
            ("env-from", "aws:team-a/env"),
            ("env-from-allow", "LD_PRELOAD"),
        ],
        "app",
    );
    let run = run_injected(&manifest, &cfg, &[], &aws_env);
    assert!(run.out.status.success(), "{}", run.stderr());
    let env_dir = &run.mounts["/secret-injector/env"];
    let file: Value =
        serde_json::from_slice(&std::fs::read(env_dir.join("env.json")).unwrap()).unwrap();
    assert!(
        file["vars"]["LD_PRELOAD"] == PRELOAD && file["vars"]["POSTGRES_PASSWORD"] == CNPG_PASSWORD,
        "both variables are written"
    );
    assert_eq!(file["loader_allowed"], json!(["LD_PRELOAD"]));
    assert!(!run.output_text().contains(PRELOAD));
    run.assert_no_values();
    drop(moto);
}

/// A login answered with 200 and a body that is not a login (a proxy's page) fails at
/// once, naming the auth mount and role, without quoting the body.
#[test]
fn a_login_answer_that_is_not_a_login_fails_at_once() {
    let rt = rt();
    let signer = TokenSigner::new();
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .fallback(|| async { "<html><body>welcome page body-canary-Lk3</body></html>" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    });
    let manifest = deployment(
        &[("secret-db", "vault:secret/data/team-a/db#password")],
        "app",
    );
    let run = run_injected(
        &manifest,
        &config(&format!("http://127.0.0.1:{port}"), "http://127.0.0.1:9"),
        &[(
            "secret-injector-token-vault",
            signer.token(NS, "app", "vault"),
        )],
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("login to vault role `app` via auth/jwt")
            && last.contains("not a Vault login")
            && last.contains("auth/jwt is a jwt auth mount with role `app`"),
        "{last}"
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(!run.output_text().contains("body-canary"));
    assert_eq!(std::fs::read_dir(run.files_dir()).unwrap().count(), 0);
}
