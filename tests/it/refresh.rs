//! The refresh sidecar (`secret-injector.io/refresh-interval`), run exactly as
//! `inject -f` writes it, against real OpenBao: rotation of every file together,
//! a deleted secret that keeps the last good files, recovery, and SIGTERM.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixtures::{
    Prepared, deployment, prepare_injected, runtime_signer_and_bao, vault_only_config, vault_token,
};
use crate::support::free_port;

/// The values of the rotated secret, one pair per version: a reader must never see a
/// username of one version beside the password of another.
pub fn pair(n: u32) -> (String, String) {
    (format!("rot-user-{n}"), format!("rot-pw-{n}-Xy7q"))
}

/// The sidecar as a child process, with a 1 s interval (admission's 10 s minimum is for
/// pods; the command takes any interval) and its probes on a free port.
pub struct Sidecar {
    pub child: Child,
    pub probes: String,
    pub prepared: Prepared,
}

impl Sidecar {
    pub fn start(mut prepared: Prepared) -> Sidecar {
        assert_eq!(prepared.container["name"], "secret-injector-refresh");
        assert_eq!(prepared.container["restartPolicy"], "Always");
        let port = free_port();
        let child = prepared
            .cmd
            .env("SECRET_INJECTOR_REFRESH_INTERVAL", "1s")
            .arg(format!("--probe-listen=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Sidecar {
            child,
            probes: format!("http://127.0.0.1:{port}"),
            prepared,
        }
    }

    pub fn files(&self) -> &Path {
        &self.prepared.mounts["/secret-injector/files"]
    }

    /// A plain HTTP/1.0 GET of the probe port: the status code and the body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut conn =
            std::net::TcpStream::connect(self.probes.trim_start_matches("http://")).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(conn, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n").ok()?;
        let mut text = String::new();
        conn.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Some((code, body))
    }

    /// Wait until `f` holds, or fail after `limit`.
    pub fn wait_for(&mut self, what: &str, limit: Duration, f: impl Fn(&Sidecar) -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the sidecar exited ({status}) while waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within {limit:?}");
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.files().join(name)).unwrap_or_default()
    }

    pub fn metric(&self, name: &str) -> Option<String> {
        let (_, text) = self.get("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
    }

    /// SIGTERM, then the exit status and everything it printed.
    pub fn terminate(self) -> (std::process::ExitStatus, String, Duration) {
        let start = Instant::now();
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text, start.elapsed())
    }
}

/// A reader process in a tight loop (Python, as an app would read): resolves `..data`
/// once per round and reads both files of that generation, until `stop` exists; then
/// prints the rounds it completed and every mixed pair it saw.
fn reader(dir: &Path, stop: &Path) -> Child {
    const SCRIPT: &str = r#"
import os, sys
d, stop = sys.argv[1], sys.argv[2]
rounds, mixed = 0, []
while not os.path.exists(stop):
    try:
        g = os.path.join(d, os.readlink(os.path.join(d, "..data")))
        user = open(os.path.join(g, "user")).read()
        pw = open(os.path.join(g, "pass")).read()
    except OSError:
        continue
    if user.split("-")[2] != pw.split("-")[2]:
        mixed.append(user + " / " + pw)
    rounds += 1
print(rounds)
for m in mixed:
    print(m)
"#;
    std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir)
        .arg(stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

#[test]
fn kv_rotation_switches_all_files_together_keeps_the_last_good_ones_and_revokes_on_sigterm() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    let write = |n: u32| {
        let (user, pass) = pair(n);
        rt.block_on(bao.kv2_put("team-a/rot", json!({"username": user, "password": pass})));
    };
    write(1);
    let tokens_before = rt.block_on(bao.token_count());
    let manifest = deployment(
        &[
            ("secret-user", "vault:secret/data/team-a/rot#username"),
            ("secret-pass", "vault:secret/data/team-a/rot#password"),
            ("refresh-interval", "10s"),
        ],
        "app",
    );
    let prepared = prepare_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "app")],
    );
    let mut sidecar = Sidecar::start(prepared);

    // Ready only once the first files are written: the startup probe holds the app.
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!((sidecar.read("user"), sidecar.read("pass")), pair(1));
    assert_eq!(sidecar.get("/healthz").map(|(c, _)| c), Some(200));

    // A new version: both files change, together, within two intervals.
    let stop = sidecar.prepared.root.path().join("stop-reading");
    let watcher = reader(sidecar.files(), &stop);
    for n in 2..=4 {
        write(n);
        sidecar.wait_for(&format!("version {n}"), Duration::from_secs(5), |s| {
            s.read("pass") == pair(n).1
        });
        assert_eq!(sidecar.read("user"), pair(n).0);
    }
    std::fs::write(&stop, "").unwrap();
    let out = watcher.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = report.lines();
    let rounds: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .expect("a round count");
    let mixed: Vec<&str> = lines.collect();
    assert!(mixed.is_empty(), "the reader saw mixed versions: {mixed:?}");
    assert!(rounds > 100, "the reader hardly ran: {rounds} rounds");

    // Deleted: the files stay, the sidecar lives and says the files are stale.
    rt.block_on(bao.api(
        "DELETE",
        "secret/metadata/team-a/rot",
        serde_json::Value::Null,
    ));
    sidecar.wait_for("stale", Duration::from_secs(10), |s| {
        s.metric("secret_injector_refresh_stale").as_deref() == Some("1")
    });
    assert_eq!((sidecar.read("user"), sidecar.read("pass")), pair(4));
    assert_eq!(sidecar.get("/healthz").map(|(c, _)| c), Some(200));

    // Restored: it recovers on its own.
    write(5);
    sidecar.wait_for("recovery", Duration::from_secs(20), |s| {
        s.read("pass") == pair(5).1
    });
    sidecar.wait_for("fresh", Duration::from_secs(5), |s| {
        s.metric("secret_injector_refresh_stale").as_deref() == Some("0")
    });

    // SIGTERM: exit 0 quickly, the token revoked, no value in the log.
    let (status, text, took) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        text.contains("file changed") && text.contains("refresh failed"),
        "{text}"
    );
    assert!(text.contains("revoked the Vault token"), "{text}");
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before,
        "a token was left behind"
    );
    for n in 1..=5 {
        let (user, pass) = pair(n);
        assert!(
            !text.contains(&pass) && !text.contains(&user),
            "a value leaked:\n{text}"
        );
    }
    // Nor the Vault token (issued at login, renewed, revoked) or anything OpenBao answered.
    bao.assert_nothing_issued_in(&text);
}

/// Dynamic PostgreSQL credentials (TTL 4 s, max 12 s): renewed past their TTL, replaced
/// by new ones before their max TTL, and on SIGTERM revoked with the token, so no role
/// is left in PostgreSQL.
#[test]
fn dynamic_credentials_are_renewed_replaced_before_max_ttl_and_revoked_on_sigterm() {
    let rt = crate::util::rt();
    let signer = crate::support::TokenSigner::new();
    let (bao, pg) = rt.block_on(async {
        let pg = crate::support::Postgres::start().await;
        let bao =
            crate::dynamic_credentials::bao_issuing_credentials_for(&pg, &signer, "4s", "12s")
                .await;
        (bao, pg)
    });
    let manifest = deployment(
        &[
            ("vault-role", "migrations"),
            ("secret-user", "vault:database/creds/migrations#username"),
            ("secret-pass", "vault:database/creds/migrations#password"),
            ("refresh-interval", "10s"),
        ],
        "migrations",
    );
    let prepared = prepare_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "migrations")],
    );
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    let first = (sidecar.read("user"), sidecar.read("pass"));
    let logs_in = |(user, pass): &(String, String)| {
        pg.psql(user, pass, "SELECT current_user").as_deref() == Ok(user.as_str())
    };
    assert!(logs_in(&first), "the first credentials log in");

    // Past the 4 s TTL they still log in: the lease (and VALID UNTIL) was renewed.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(sidecar.read("user"), first.0, "renewed, not replaced yet");
    assert!(logs_in(&first), "the credentials outlive their first TTL");

    // Before the 12 s max TTL, new credentials replace them, and they log in.
    sidecar.wait_for("new credentials", Duration::from_secs(10), |s| {
        s.read("user") != first.0
    });
    let second = (sidecar.read("user"), sidecar.read("pass"));
    assert!(logs_in(&second), "the new credentials log in");

    // SIGTERM revokes the token and with it every lease: no role is left.
    let (status, text, took) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // No Vault token and no issued password (both pairs) in what it printed.
    bao.assert_nothing_issued_in(&text);
    let roles = || {
        pg.psql(
            "postgres",
            &pg.superuser_password,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'",
        )
        .unwrap()
    };
    let start = Instant::now();
    while roles() != "0" && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(roles(), "0", "dynamic roles left in PostgreSQL\n{text}");
    for (user, pass) in [&first, &second] {
        assert!(
            !text.contains(pass.as_str()) && !text.contains(user.as_str()),
            "a credential leaked:\n{text}"
        );
    }
    assert!(text.contains("nears its max TTL"), "{text}");
}

/// A Vault token that lives 3 s (5 s at most) and a projected token that the kubelet
/// replaces: the sidecar renews the token, logs in again before the max TTL with the
/// token file's *current* content (the first JWT has expired by then), and keeps
/// refreshing.
#[test]
fn an_expiring_vault_token_is_renewed_then_replaced_by_a_new_login_with_the_current_token() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    rt.block_on(bao.api(
        "POST",
        "auth/jwt/role/app",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "bound_subject": "system:serviceaccount:team-a:app",
            "user_claim": "sub",
            "policies": ["app"],
            "token_ttl": "3s",
            "token_max_ttl": "5s",
            "expiration_leeway": -1,
            "clock_skew_leeway": -1,
            "not_before_leeway": -1,
        }),
    ));
    let write = |n: u32| {
        let (user, pass) = pair(n);
        rt.block_on(bao.kv2_put("team-a/rot", json!({"username": user, "password": pass})));
    };
    write(1);
    let manifest = deployment(
        &[
            ("secret-pass", "vault:secret/data/team-a/rot#password"),
            ("refresh-interval", "10s"),
        ],
        "app",
    );
    // The first projected token expires in 3 s.
    let first = (
        "secret-injector-token-vault",
        signer.token_for("team-a", "app", "vault", 3),
    );
    let prepared = prepare_injected(&manifest, &vault_only_config(&bao.addr), &[first]);
    let token_file = prepared.mounts["/var/run/secrets/secret-injector/vault"].join("token");
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    // The kubelet rotates the projected token.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&token_file, signer.token_for("team-a", "app", "vault", 600)).unwrap();

    // Past the Vault token's max TTL and the first JWT's expiry, refreshes still work.
    std::thread::sleep(Duration::from_secs(6));
    write(2);
    sidecar.wait_for(
        "a refresh after the new login",
        Duration::from_secs(10),
        |s| s.read("pass") == pair(2).1,
    );
    let (status, text, _) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("renewed the Vault token"), "{text}");
    assert!(
        text.contains("logged in again with the current service-account token"),
        "{text}"
    );
    assert!(
        !text.contains(&pair(1).1) && !text.contains(&pair(2).1),
        "a value leaked"
    );
    // Neither Vault token (the first login's, renewed, nor the second login's).
    bao.assert_nothing_issued_in(&text);
    let tokens = bao
        .issued_secrets()
        .into_iter()
        .filter(|t| t.starts_with("s."))
        .count();
    assert!(
        tokens >= 2,
        "two logins, {tokens} tokens seen in the audit log"
    );
}

/// AWS Secrets Manager in moto: `PutSecretValue` changes the current file at the next
/// refresh, and a `?version-stage=AWSPREVIOUS` file follows the stage to the version it
/// replaced.
#[test]
fn aws_put_secret_value_changes_the_files_and_awsprevious_follows_the_stage() {
    let rt = crate::util::rt();
    let moto = rt.block_on(crate::fixtures::moto_with_secrets(&[
        ("team-a/api", "aws-v1-Qe4r"),
        ("team-a/other", "other-v1-Pz8k"),
    ]));
    let manifest = deployment(
        &[
            ("secret-current", "aws:team-a/api"),
            (
                "secret-previous",
                "aws:team-a/api?version-stage=AWSPREVIOUS",
            ),
            ("secret-other", "aws:team-a/other"),
            ("refresh-interval", "10s"),
        ],
        "app",
    );
    // No AWSPREVIOUS yet: the first fetch would fail, so there is a second version.
    rt.block_on(moto.put("team-a/api", "aws-v2-Wt5y"));
    let mut prepared =
        prepare_injected(&manifest, &crate::fixtures::aws_only_config(&moto.url), &[]);
    prepared.cmd.envs(crate::fixtures::STATIC_AWS_KEYS);
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(sidecar.read("current"), "aws-v2-Wt5y");
    assert_eq!(sidecar.read("previous"), "aws-v1-Qe4r");

    rt.block_on(moto.put("team-a/api", "aws-v3-Mn6b"));
    sidecar.wait_for("the new version", Duration::from_secs(5), |s| {
        s.read("current") == "aws-v3-Mn6b"
    });
    assert_eq!(
        sidecar.read("previous"),
        "aws-v2-Wt5y",
        "AWSPREVIOUS moved with the stage"
    );
    assert_eq!(sidecar.read("other"), "other-v1-Pz8k");

    let (status, text, _) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    for v in ["aws-v1-Qe4r", "aws-v2-Wt5y", "aws-v3-Mn6b", "other-v1-Pz8k"] {
        assert!(!text.contains(v), "a value leaked:\n{text}");
    }
}

/// An app with a reload endpoint, as a real process (Python's http.server): on each
/// POST to `/-/reload` it reads the secret file `pass` from `files` and appends what it
/// read to `record`, one line per reload.
pub struct App {
    child: Child,
    record: std::path::PathBuf,
}

impl App {
    pub fn start_on(port: u16, files: &Path, record: std::path::PathBuf) -> App {
        const SCRIPT: &str = r#"
import http.server, sys
port, files, record = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Reload(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path == "/-/reload":
            with open(files + "/pass") as f, open(record, "a") as out:
                out.write(f.read() + "\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Reload).serve_forever()
"#;
        let child = std::process::Command::new("python3")
            .args(["-c", SCRIPT, &port.to_string()])
            .arg(files)
            .arg(&record)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the app did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        App { child, record }
    }

    /// What the app read at each reload.
    pub fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A refreshing pod that reads `team-a/rot#password` and has `reload-url: url`.
pub fn reload_pod(
    bao: &crate::support::OpenBao,
    signer: &crate::support::TokenSigner,
    url: &str,
) -> Prepared {
    let manifest = deployment(
        &[
            ("secret-pass", "vault:secret/data/team-a/rot#password"),
            ("refresh-interval", "10s"),
            ("reload-url", url),
        ],
        "app",
    );
    prepare_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(signer, "app")],
    )
}

/// `reload-url`: after the files changed, and only then, the sidecar POSTs the app's
/// reload endpoint once; the app (a real process) then reads the new value. The first
/// files, written before the app starts, cause no reload.
#[test]
fn the_app_is_asked_to_reload_after_the_files_changed() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    let write = |n: u32| {
        let (user, pass) = pair(n);
        rt.block_on(bao.kv2_put("team-a/rot", json!({"username": user, "password": pass})));
    };
    write(1);
    // The app's port is chosen before the manifest, which names it.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/-/reload");
    let prepared = reload_pod(&bao, &signer, &url);
    let files = prepared.mounts["/secret-injector/files"].clone();
    let record = prepared.root.path().join("reloads");
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    let app = App::start_on(port, &files, record);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(app.reloads().is_empty(), "no change, no reload");
    write(2);
    sidecar.wait_for("a reload after the change", Duration::from_secs(5), |_| {
        !app.reloads().is_empty()
    });
    assert_eq!(
        app.reloads(),
        [pair(2).1],
        "the app read the new value when told"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(app.reloads().len(), 1, "one reload per change");
    let (status, text, _) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("asked the app to reload"), "{text}");
}

/// Google Secret Manager through Workload Identity Federation, refreshed: a new version
/// replaces the file, and when the access token expires the sidecar exchanges the
/// projected token again, reading the file anew (the kubelet rotates it).
#[test]
fn gcp_new_versions_and_a_rotated_projected_token_are_picked_up() {
    use crate::clouds::{GCP_TOKEN_VOLUME, PROVIDER, gcp_world, subject};
    use crate::fixtures::{NOWHERE, NS, config};
    let rt = crate::util::rt();
    let signer = crate::support::TokenSigner::new();
    let mut world = gcp_world();
    // No impersonation: the federated principal reads the secret itself, with access
    // tokens that live 4 s (used for 2 s).
    world.access.insert(
        format!("principal:{}", subject("app")),
        vec!["projects/my-project/secrets/api-token".to_string()],
    );
    world.token_lifetime = 4;
    let gcp = rt.block_on(crate::support::GcpServer::start(world, &signer.public_pem));
    let url = &gcp.url;
    let cfg = format!(
        "{}gcp:\n  project: my-project\n  workload_identity_provider: \"{PROVIDER}\"\n  secret_manager_endpoint: {url}\n  sts_endpoint: {url}\n",
        config(NOWHERE, NOWHERE)
    );
    let manifest = deployment(
        &[
            ("secret-token", "gcp:api-token"),
            ("refresh-interval", "10s"),
        ],
        "app",
    );
    let first = signer.token(NS, "app", PROVIDER);
    let prepared = prepare_injected(&manifest, &cfg, &[(GCP_TOKEN_VOLUME, first.clone())]);
    let token_file = prepared.mounts["/var/run/secrets/secret-injector/gcp"].join("token");
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(sidecar.read("token"), crate::fixtures::PLAIN_TOKEN);

    // The kubelet rotates the projected token; a new version is added.
    let second = signer.token_for(NS, "app", PROVIDER, 900);
    assert_ne!(first, second);
    std::fs::write(&token_file, &second).unwrap();
    gcp.add_version("projects/my-project/secrets/api-token", b"gcp-v3-Rt7u");
    sidecar.wait_for("the new version", Duration::from_secs(10), |s| {
        s.read("token") == "gcp-v3-Rt7u"
    });
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_string();
    let start = Instant::now();
    while !gcp.exchanged().contains(&signature(&second))
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exchanged = gcp.exchanged();
    assert_eq!(exchanged[0], signature(&first));
    assert!(
        exchanged.contains(&signature(&second)),
        "the expired access token was replaced by exchanging the rotated projected token"
    );

    let (status, text, _) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    for v in [
        crate::fixtures::PLAIN_TOKEN,
        "gcp-v3-Rt7u",
        &signature(&first),
        &signature(&second),
    ] {
        assert!(!text.contains(v), "leaked into the log:\n{text}");
    }
}
