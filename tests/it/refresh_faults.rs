//! Faults around the refresh sidecar and `init` that a security review reproduced:
//! a new login during a database outage must not leave the app on revoked
//! credentials, SIGTERM during the first fetch must revoke the token, and the reload
//! call must not follow a redirect. Real OpenBao and PostgreSQL throughout.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixtures::{NS, deployment, prepare_injected, vault_only_config, vault_token};
use crate::refresh::Sidecar;
use crate::support::{OpenBao, Postgres, TokenSigner, free_port};

/// Points OpenBao's `pg` connection at a closed port (the database is down: creds
/// fail with a 500, which the agent retries), or back at `pg`.
async fn database_reachable(bao: &OpenBao, pg: &Postgres, up: bool) {
    let port = if up { pg.port } else { 9 };
    bao.api(
        "POST",
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres?sslmode=disable&connect_timeout=1"
            ),
            "username": "postgres",
            "password": pg.superuser_password,
            "allowed_roles": "migrations",
            "verify_connection": up,
        }),
    )
    .await;
}

/// The `migrations` role again, with tokens of `token_ttl` that may not renew
/// themselves (no default policy, and `renew-self` is not in theirs): at 2/3 of the TTL
/// the sidecar's renewal is refused and it logs in again.
async fn tokens_that_cannot_renew(bao: &OpenBao, token_ttl: &str) {
    bao.policy(
        "migrations-no-renew",
        r#"
path "database/creds/migrations" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
"#,
    )
    .await;
    bao.api(
        "POST",
        "auth/jwt/role/migrations",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "bound_subject": format!("system:serviceaccount:{NS}:migrations"),
            "user_claim": "sub",
            "policies": ["migrations-no-renew"],
            "token_no_default_policy": true,
            "token_ttl": token_ttl,
        }),
    )
    .await;
}

fn migrations_manifest(extra: &[(&str, &str)]) -> String {
    let mut annotations = vec![
        ("vault-role", "migrations"),
        ("secret-user", "vault:database/creds/migrations#username"),
        ("secret-pass", "vault:database/creds/migrations#password"),
    ];
    annotations.extend_from_slice(extra);
    deployment(&annotations, "migrations")
}

/// The security review's first defect, against real OpenBao and PostgreSQL. The Vault
/// token cannot be renewed, so at 2/3 of its 15 s TTL the sidecar logs in again; the
/// database is down then, so the new credentials cannot be fetched. Until they are:
/// the files keep the old credentials, which keep working (the old token is not
/// revoked before its replacements are written), and the stale metric says 1 the whole
/// time. Once the database is back, new credentials replace them at the next backoff
/// step (not at the lease's renewal, 40 minutes away), the metric goes back to 0, and
/// the old session is revoked after the grace period.
#[test]
fn a_new_login_during_a_database_outage_never_leaves_the_app_on_revoked_credentials() {
    let rt = crate::util::rt();
    let signer = TokenSigner::new();
    let (bao, pg) = rt.block_on(async {
        let pg = Postgres::start().await;
        let bao =
            crate::dynamic_credentials::bao_issuing_credentials_for(&pg, &signer, "1h", "24h")
                .await;
        tokens_that_cannot_renew(&bao, "15s").await;
        (bao, pg)
    });
    let manifest = migrations_manifest(&[("refresh-interval", "10s")]);
    let mut prepared = prepare_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "migrations")],
    );
    prepared.cmd.env("SECRET_INJECTOR_LEASE_GRACE", "1s");
    let tokens_before = rt.block_on(bao.token_count());
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    let first = (sidecar.read("user"), sidecar.read("pass"));
    let logs_in = |(user, pass): &(String, String)| {
        pg.psql(user, pass, "SELECT current_user").as_deref() == Ok(user.as_str())
    };
    assert!(logs_in(&first), "the first credentials log in");
    let stale = |s: &Sidecar| s.metric("secret_injector_refresh_stale");

    // The database goes down; at ~10 s the renewal is refused and the new login's
    // fetch fails.
    rt.block_on(database_reachable(&bao, &pg, false));
    sidecar.wait_for("stale after the new login", Duration::from_secs(20), |s| {
        stale(s).as_deref() == Some("1")
    });
    // While the replacements cannot be fetched, the files hold the old credentials,
    // still valid, and the metric keeps saying stale.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            stale(&sidecar).as_deref(),
            Some("1"),
            "the files hold credentials of a replaced session: stale"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sidecar.read("user"), first.0);
    // Both sessions exist: the old one is kept, past its 1 s grace, while its leases
    // are in the files. (PostgreSQL cannot tell: with the database unreachable Vault
    // could not drop the role even if it revoked the lease.)
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before + 2,
        "the old session was revoked before its replacements were written"
    );

    // Back: new credentials within a few seconds, and they log in.
    rt.block_on(database_reachable(&bao, &pg, true));
    sidecar.wait_for("new credentials", Duration::from_secs(10), |s| {
        s.read("user") != first.0
    });
    let second = (sidecar.read("user"), sidecar.read("pass"));
    assert!(logs_in(&second), "the new credentials log in");
    sidecar.wait_for("fresh", Duration::from_secs(5), |s| {
        stale(s).as_deref() == Some("0")
    });
    // The old session goes once its replacements are in place (grace 1 s here).
    let start = Instant::now();
    while logs_in(&first) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!logs_in(&first), "the replaced credentials were revoked");

    let (status, text, _) = sidecar.terminate();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("cannot renew the Vault token"), "{text}");
    assert!(
        text.contains("the files hold credentials whose Vault lease or token is ending"),
        "{text}"
    );
    assert!(
        text.contains("the credentials in the files are current again"),
        "{text}"
    );
    bao.assert_nothing_issued_in(&text);
    for (user, pass) in [&first, &second] {
        assert!(
            !text.contains(pass.as_str()) && !text.contains(user.as_str()),
            "a credential leaked:\n{text}"
        );
    }
}

/// Waits until OpenBao holds more tokens than `before` (the agent has logged in), then
/// sends SIGTERM; returns the exit status, the output and how long the exit took.
fn terminate_after_login(
    rt: &tokio::runtime::Runtime,
    bao: &OpenBao,
    before: usize,
    mut child: Child,
) -> (std::process::ExitStatus, String, Duration) {
    let start = Instant::now();
    while rt.block_on(bao.token_count()) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent never logged in"
        );
        assert!(child.try_wait().unwrap().is_none(), "the agent exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well into the retries of the first fetch.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    let stopped = Instant::now();
    // SAFETY: kill(2) with a pid this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text, stopped.elapsed())
}

/// SIGTERM while the first fetch is still retrying (the database is down from the
/// start), for `init` and for the refresh sidecar: the token it was issued is revoked
/// (OpenBao's token count is back where it was), nothing is written, and it exits
/// within seconds, not killed by the signal.
#[test]
fn sigterm_during_the_first_fetch_revokes_the_token_and_exits_promptly() {
    use std::os::unix::process::ExitStatusExt;
    let rt = crate::util::rt();
    let signer = TokenSigner::new();
    let (bao, pg) = rt.block_on(async {
        let pg = Postgres::start().await;
        let bao =
            crate::dynamic_credentials::bao_issuing_credentials_for(&pg, &signer, "1h", "24h")
                .await;
        database_reachable(&bao, &pg, false).await;
        (bao, pg)
    });
    for refresh in [false, true] {
        let extra: &[(&str, &str)] = if refresh {
            &[("refresh-interval", "10s")]
        } else {
            &[]
        };
        let mut prepared = prepare_injected(
            &migrations_manifest(extra),
            &vault_only_config(&bao.addr),
            &[vault_token(&signer, "migrations")],
        );
        if refresh {
            prepared
                .cmd
                .arg(format!("--probe-listen=127.0.0.1:{}", free_port()));
        }
        let before = rt.block_on(bao.token_count());
        let child = prepared
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, text, took) = terminate_after_login(&rt, &bao, before, child);
        let which = if refresh { "refresh" } else { "init" };
        assert_eq!(
            status.signal(),
            None,
            "{which} was killed by SIGTERM instead of handling it:\n{text}"
        );
        assert!(took < Duration::from_secs(5), "{which}: {took:?}\n{text}");
        if refresh {
            assert!(status.success(), "{which}: {status}\n{text}");
        } else {
            assert_eq!(status.code(), Some(1), "{text}");
            assert!(
                text.contains("stopped by SIGTERM before the secrets were written"),
                "{text}"
            );
        }
        assert!(text.contains("revoked the Vault token"), "{which}: {text}");
        assert_eq!(
            rt.block_on(bao.token_count()),
            before,
            "{which} left its Vault token behind"
        );
        let files = &prepared.mounts["/secret-injector/files"];
        let left: Vec<_> = std::fs::read_dir(files).unwrap().flatten().collect();
        assert!(left.is_empty(), "{which} wrote {left:?}");
        bao.assert_nothing_issued_in(&text);
    }
    drop(pg);
}

/// A process on `port` that records every request's method and path in `record`, one
/// line each, and answers a POST with a 307 to `redirect` when given, else 200.
fn recorder(port: u16, record: &std::path::Path, redirect: Option<&str>) -> Child {
    const SCRIPT: &str = r#"
import http.server, sys
port, record, redirect = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        with open(record, "a") as out:
            out.write(self.command + " " + self.path + "\n")
        if redirect:
            self.send_response(307)
            self.send_header("location", redirect)
        else:
            self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    do_POST = do_GET = answer
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;
    let child = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &port.to_string()])
        .arg(record)
        .arg(redirect.unwrap_or(""))
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// `reload-url` answers with a redirect elsewhere: the sidecar does not follow it (the
/// admission text promises it calls no other host), and says so. A reload URL that is
/// not on loopback is refused at start, as admission refuses it.
#[test]
fn the_reload_call_never_follows_a_redirect() {
    let (rt, signer, bao) = crate::fixtures::runtime_signer_and_bao();
    let write = |n: u32| {
        let (user, pass) = crate::refresh::pair(n);
        rt.block_on(bao.kv2_put("team-a/rot", json!({"username": user, "password": pass})));
    };
    write(1);
    let (app_port, elsewhere_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{app_port}/-/reload");
    let prepared = crate::refresh::reload_pod(&bao, &signer, &url);
    // Not in the pod's directory, which goes with the sidecar.
    let records = tempfile::tempdir().unwrap();
    let (app_record, elsewhere_record) =
        (records.path().join("app"), records.path().join("elsewhere"));
    let elsewhere = format!("http://127.0.0.1:{elsewhere_port}/stolen");
    let mut servers = [
        recorder(app_port, &app_record, Some(&elsewhere)),
        recorder(elsewhere_port, &elsewhere_record, None),
    ];
    let mut sidecar = Sidecar::start(prepared);
    sidecar.wait_for("ready", Duration::from_secs(20), |s| {
        s.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    write(2);
    sidecar.wait_for("the reload call", Duration::from_secs(10), |_| {
        std::fs::read_to_string(&app_record).is_ok_and(|r| r.contains("POST /-/reload"))
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (status, text, _) = sidecar.terminate();
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(status.success(), "{status}\n{text}");
    assert_eq!(
        std::fs::read_to_string(&elsewhere_record).unwrap_or_default(),
        "",
        "the redirect was followed:\n{text}"
    );
    assert!(
        text.contains("answered a redirect, which is not followed"),
        "{text}"
    );

    // Not on loopback: refused before anything is fetched.
    let mut prepared = crate::refresh::reload_pod(&bao, &signer, &url);
    let out = prepared
        .cmd
        .env(
            "SECRET_INJECTOR_RELOAD_URL",
            "http://169.254.169.254/latest",
        )
        .arg(format!("--probe-listen=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("must point at the pod itself"), "{err}");
}
