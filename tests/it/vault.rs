//! Vault (a real OpenBao): who may log in (jwt auth, kubernetes auth through a
//! TokenReview stand-in), what a role may read, missing keys and bad tokens, TLS with the
//! configured CA, and a login answered by something that is not Vault.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::{
    DB_PASSWORD, DB_PASSWORD_OLD, InitRun, NS, VAULT_TOKEN_VOLUME, bao_with_secrets,
    db_password_deployment, deployment, run_injected, runtime_signer_and_bao, vault_only_config,
    vault_token,
};
use crate::support::{OpenBao, TokenReviewServer, TokenSigner};
use crate::util::rt;

#[test]
fn a_token_for_another_service_account_is_refused_at_once() {
    let (_rt, signer, bao) = runtime_signer_and_bao();
    let manifest = db_password_deployment();
    let run = run_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "other")],
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
    assert!(run.file_names().is_empty(), "no files");
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
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "other")],
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
fn missing_key_and_bad_token_fail_fast_and_write_nothing() {
    let (rt, signer, bao) = runtime_signer_and_bao();
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
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "app")],
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
    assert!(run.file_names().is_empty(), "all or nothing");
    run.assert_no_values();
    assert_eq!(
        rt.block_on(bao.token_count()),
        tokens_before,
        "the token of a failed run is revoked"
    );

    let run = run_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[(VAULT_TOKEN_VOLUME, "this is not a token".to_string())],
        &[],
    );
    assert_eq!(run.out.status.code(), Some(1));
    assert!(run.last_line().contains("not a JWT"), "{}", run.last_line());
    assert!(run.elapsed < Duration::from_secs(5));
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
    let manifest = db_password_deployment();
    let config = format!("vault:\n  address: {}\n", bao.addr);
    let run = run_injected(&manifest, &config, &[vault_token(&signer, "app")], &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD);
    assert!(
        reviewer.reviews.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "OpenBao asked the TokenReview API"
    );
    run.assert_no_values();
    // Nor the Vault token the login issued, nor any value OpenBao answered.
    bao.assert_nothing_issued_in(&run.output_text());

    // A token signed by someone else is refused by the TokenReview: permanent.
    let forger = TokenSigner::new();
    let run = run_injected(&manifest, &config, &[vault_token(&forger, "app")], &[]);
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
    let manifest = db_password_deployment();
    let token = [vault_token(&signer, "app")];
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
    let run = run_injected(&manifest, &vault_only_config(&bao.addr), &token, &[]);
    let last = run.failed_without_retry();
    assert!(
        last.contains("certificate") && last.contains("vault.ca_cert"),
        "{last}"
    );
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
    let manifest = db_password_deployment();
    let run = run_injected(
        &manifest,
        &vault_only_config(&format!("http://127.0.0.1:{port}")),
        &[vault_token(&signer, "app")],
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
    assert!(run.file_names().is_empty(), "nothing written");
}

/// The reference a hint says to write: the text between "write the reference as `" and
/// the next "`".
fn suggested_reference(line: &str) -> String {
    let (_, after) = line
        .split_once("write the reference as `")
        .unwrap_or_else(|| panic!("no corrected reference in: {line}"));
    after.split('`').next().unwrap().to_string()
}

/// A run of `app` reading one file `db` from `reference` as vault role `role`.
fn read_as(bao: &OpenBao, signer: &TokenSigner, role: &str, reference: &str) -> InitRun {
    let manifest = deployment(&[("secret-db", reference), ("vault-role", role)], "app");
    let token = [vault_token(signer, "app")];
    run_injected(&manifest, &vault_only_config(&bao.addr), &token, &[])
}

/// The lookups of a mount the runs made so far.
fn mount_lookups(bao: &OpenBao) -> Vec<String> {
    bao.requested_paths()
        .into_iter()
        .filter(|p| p.starts_with("sys/internal/ui/mounts"))
        .collect()
}

/// Issue 26: a KV v2 path written without `data/`, refused with 403 under a policy that
/// allows `secret/data/…`, names the mount and the corrected reference (its `?version`
/// and `#key` kept), and that reference, copied from the message, works. The mount is
/// looked up only after the refusal; a read that works, and a refused path that already
/// has `data/`, never look it up.
#[test]
fn a_kv2_path_without_data_names_the_corrected_reference() {
    let (_rt, signer, bao) = runtime_signer_and_bao();
    let run = read_as(&bao, &signer, "app", "vault:secret/data/team-a/db#password");
    assert!(run.out.status.success(), "{}", run.stderr());
    let run = read_as(&bao, &signer, "app", "vault:secret/data/other/db#password");
    let last = run.failed_without_retry();
    assert!(last.ends_with("check the role's policies"), "{last}");
    assert!(!last.contains("KV v2"), "{last}");
    assert_eq!(
        mount_lookups(&bao),
        Vec::<String>::new(),
        "neither a read that works nor a refused path with data/ looks up the mount"
    );

    let run = read_as(&bao, &signer, "app", "vault:secret/team-a/db#password");
    let last = run.failed_without_retry();
    assert!(last.starts_with("secret-injector init: "), "{last}");
    assert!(
        last.contains(
            "vault:secret/team-a/db: permission denied (HTTP 403) for vault role `app` via auth/jwt (jwt)"
        ),
        "the error is still the 403: {last}"
    );
    assert!(
        last.ends_with(
            "; `secret/` is a KV v2 mount: its secrets are read at `secret/data/team-a/db`; write the reference as `vault:secret/data/team-a/db#password`"
        ),
        "{last}"
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(run.file_names().is_empty(), "nothing written");
    run.assert_no_values();
    assert_eq!(
        mount_lookups(&bao),
        ["sys/internal/ui/mounts/secret/team-a/db"],
        "looked up once, after the refusal"
    );
    let corrected = suggested_reference(&last);
    let run = read_as(&bao, &signer, "app", &corrected);
    assert!(run.out.status.success(), "{corrected}: {}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD);

    // ?version is kept: version 1 is the old password.
    let run = read_as(
        &bao,
        &signer,
        "app",
        "vault:secret/team-a/db?version=1#password",
    );
    let last = run.failed_without_retry();
    let corrected = suggested_reference(&last);
    assert_eq!(corrected, "vault:secret/data/team-a/db?version=1#password");
    let run = read_as(&bao, &signer, "app", &corrected);
    assert!(run.out.status.success(), "{corrected}: {}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD_OLD);
}

/// Several references to the same location are all shown corrected, each with its key.
#[test]
fn every_reference_to_the_location_is_shown_corrected() {
    let (_rt, signer, bao) = runtime_signer_and_bao();
    let manifest = deployment(
        &[
            ("secret-db", "vault:secret/team-a/db#password"),
            ("env-DB_USER", "vault:secret/team-a/db#username"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "app")],
        &[],
    );
    let last = run.failed_without_retry();
    assert!(
        last.ends_with(
            "write the references as `vault:secret/data/team-a/db#password` and `vault:secret/data/team-a/db#username`"
        ),
        "{last}"
    );
}

/// The same without `data/` under a policy that allows the whole mount: OpenBao answers
/// 404 (no `errors`, a warning only), and the message says the same.
#[test]
fn a_kv2_path_without_data_answered_404_names_the_corrected_reference() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    rt.block_on(async {
        bao.policy(
            "whole-mount",
            "path \"secret/*\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.jwt_role("jwt", ("whole-mount", NS, "app"), &["whole-mount"], false)
            .await;
    });
    let run = read_as(
        &bao,
        &signer,
        "whole-mount",
        "vault:secret/team-a/db#password",
    );
    let last = run.failed_without_retry();
    assert!(
        last.ends_with(
            "vault:secret/team-a/db: not found (HTTP 404); `secret/` is a KV v2 mount: its secrets are read at `secret/data/team-a/db`; write the reference as `vault:secret/data/team-a/db#password`"
        ),
        "{last}"
    );
    let corrected = suggested_reference(&last);
    let run = read_as(&bao, &signer, "whole-mount", &corrected);
    assert!(run.out.status.success(), "{corrected}: {}", run.stderr());
    assert_eq!(run.file("db"), DB_PASSWORD);
}

/// A KV v1 mount has no `data/`: a refused or missing path there gets no such hint,
/// though its mount was looked up.
#[test]
fn a_kv1_path_gets_no_kv2_hint() {
    let (_rt, signer, bao) = runtime_signer_and_bao();
    let run = read_as(&bao, &signer, "app", "vault:kv1/team-a/nope#key");
    let last = run.failed_without_retry();
    assert!(
        last.ends_with("vault:kv1/team-a/nope: not found (HTTP 404)"),
        "{last}"
    );
    let run = read_as(&bao, &signer, "app", "vault:kv1/other/api#key");
    let last = run.failed_without_retry();
    assert!(
        last.contains("vault:kv1/other/api: permission denied (HTTP 403)")
            && last.ends_with("; check the role's policies"),
        "{last}"
    );
    assert!(!last.contains("KV v2") && !last.contains("data/"), "{last}");
    assert_eq!(
        mount_lookups(&bao),
        [
            "sys/internal/ui/mounts/kv1/team-a/nope",
            "sys/internal/ui/mounts/kv1/other/api"
        ]
    );
}

/// OpenBao answers `sys/internal/ui/mounts/<path>` to any token with a capability under
/// the mount, its `default` policy or not. A token with none there is refused the
/// lookup (and the read): the hint is then a guess by the mount's name, hedged, and only
/// for a name usual for KV mounts.
#[test]
fn without_the_mount_lookup_the_hint_goes_by_the_paths_shape() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    rt.block_on(async {
        bao.policy(
            "kv1-only",
            "path \"kv1/team-a/*\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.jwt_role("jwt", ("kv1-only", NS, "app"), &["kv1-only"], true)
            .await;
        bao.jwt_role("jwt", ("no-default", NS, "app"), &["app"], true)
            .await;
    });
    // No default policy, but a capability under secret/: the mount is known.
    let run = read_as(
        &bao,
        &signer,
        "no-default",
        "vault:secret/team-a/db#password",
    );
    let last = run.failed_without_retry();
    assert!(
        last.ends_with("; `secret/` is a KV v2 mount: its secrets are read at `secret/data/team-a/db`; write the reference as `vault:secret/data/team-a/db#password`"),
        "{last}"
    );

    // Nothing under secret/: the lookup is refused.
    let run = read_as(&bao, &signer, "kv1-only", "vault:secret/team-a/db#password");
    let last = run.failed_without_retry();
    assert!(
        last.contains(
            "vault:secret/team-a/db: permission denied (HTTP 403) for vault role `kv1-only`"
        ) && last.ends_with(
            ": permission denied; check the role's policies; if `secret/` is a KV v2 mount, write the reference as `vault:secret/data/team-a/db#password`"
        ),
        "{last}"
    );
    assert!(
        mount_lookups(&bao).contains(&"sys/internal/ui/mounts/secret/team-a/db".to_string()),
        "the lookup was tried"
    );
    // A mount not named like a KV mount: no guess.
    let run = read_as(
        &bao,
        &signer,
        "kv1-only",
        "vault:team-kv/team-a/db#password",
    );
    let last = run.failed_without_retry();
    assert!(
        last.ends_with(": permission denied; check the role's policies"),
        "{last}"
    );
    run.assert_no_values();
}
