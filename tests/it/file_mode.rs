//! The init container's file mode, end to end: every kind of reference, from OpenBao and
//! moto at once, with the pod's own identity, written as files with their modes; and
//! file names that collide with temp names.

use serde_json::{Value, json};

use crate::fixtures::{
    API_KEY, CNPG_PASSWORD, DB_PASSWORD, DB_PASSWORD_OLD, JWT_SECRET, PLAIN_TOKEN, TEAM_A_ROLE,
    aws_token, bao_with_secrets, config, deployment, run_injected, runtime_signer_and_bao,
    vault_only_config, vault_token,
};
use crate::support::{Moto, TokenSigner};
use crate::util::rt;

#[test]
fn init_fetches_from_openbao_and_moto_with_the_pods_identity() {
    let rt = rt();
    let signer = TokenSigner::new();
    let (bao, moto, arn, version_id) = rt.block_on(async {
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
        moto.create(
            "deparrow/production/secrets",
            &json!({"DEPARROW_JWT_SECRET": JWT_SECRET, "REDIS_PASSWORD": "r"}).to_string(),
        )
        .await;
        (bao, moto, arn, v2)
    });
    let tokens_before = rt.block_on(bao.token_count());
    let arn_ref = format!("aws:{arn}#password");
    let by_id = format!("aws:team-a/rotated?version-id={version_id}#v");
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
            ("aws-role-arn", TEAM_A_ROLE),
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
        &[vault_token(&signer, "app"), aws_token(&signer, "app")],
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
    let names = run.file_names();
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

/// A file may be named like another file's temp name under the old scheme
/// (`.a.secret-injector-tmp` beside `a`): each keeps its own value and mode.
#[test]
fn a_file_named_like_a_temp_file_does_not_take_over_another() {
    let (_rt, signer, bao) = runtime_signer_and_bao();
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
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "app")],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("a"), DB_PASSWORD);
    assert_eq!(run.mode("a"), 0o400, "a's own mode");
    assert_eq!(run.file(".a.secret-injector-tmp"), API_KEY);
    assert_eq!(run.mode(".a.secret-injector-tmp"), 0o444);
    assert_eq!(
        run.file_names(),
        [".a.secret-injector-tmp", "a"],
        "no temp file left"
    );
    run.assert_no_values();
}
