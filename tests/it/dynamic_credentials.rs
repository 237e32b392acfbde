//! Vault dynamic credentials: database credentials that OpenBao's database engine
//! issues from a real PostgreSQL.

use serde_json::{Value, json};

use crate::fixtures::{NS, deployment, run_injected, vault_only_config, vault_token};
use crate::support::{OpenBao, Postgres, TokenSigner};
use crate::util::rt;

/// OpenBao whose database engine issues credentials for `pg` to role `migrations`,
/// which the service account `migrations` of team-a gets through jwt auth; leases of
/// `default_ttl`, renewable up to `max_ttl`.
pub async fn bao_issuing_credentials_for(
    pg: &Postgres,
    signer: &TokenSigner,
    default_ttl: &str,
    max_ttl: &str,
) -> OpenBao {
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
            "default_ttl": default_ttl,
            "max_ttl": max_ttl,
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
    bao
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
        let bao = bao_issuing_credentials_for(&pg, &signer, "1h", "24h").await;
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
        &vault_only_config(&bao.addr),
        &[vault_token(&signer, "migrations")],
        &[],
    );
    assert!(run.out.status.success(), "init failed:\n{}", run.stderr());

    let user = run.file("db-user");
    let password = run.file("db-password");
    // Neither the Vault token nor the issued password is in what init printed.
    bao.assert_nothing_issued_in(&run.output_text());
    assert!(
        bao.issued_secrets().contains(&password),
        "the audit log check sees the issued password"
    );
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
