//! A store that is down: retried until it is up, or until the deadline, which ends in
//! one clear line (shown with Vault; AWS's throttling and an unreachable STS are in
//! `aws.rs`).

use std::time::Duration;

use crate::fixtures::{
    DB_PASSWORD, DEADLINE_3S, db_password_deployment, run_injected, runtime_signer_and_bao,
    vault_only_config, vault_token,
};
use crate::support::{TcpProxy, TokenSigner};
use crate::util;

#[test]
fn store_down_at_start_then_up_heals_by_retrying() {
    let (rt, signer, bao) = runtime_signer_and_bao();
    let _guard = rt.enter();
    let proxy = TcpProxy::start(bao.port, Duration::from_secs(2), Duration::ZERO);
    let manifest = db_password_deployment();
    let run = run_injected(
        &manifest,
        &vault_only_config(&format!("http://127.0.0.1:{}", proxy.port)),
        &[vault_token(&signer, "app")],
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
    let manifest = db_password_deployment();
    let run = run_injected(
        &manifest,
        &vault_only_config(&dead),
        &[vault_token(&signer, "app")],
        &DEADLINE_3S,
    );
    let stderr = run.gave_up_at_a_3s_deadline();
    assert!(
        stderr.starts_with("secret-injector init: gave up after 3s: login to vault role `app`"),
        "{stderr}"
    );
}
