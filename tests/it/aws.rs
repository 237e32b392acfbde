//! AWS (moto): Secrets Manager's throttling and 503 pages, a missing secret, a role's
//! own permissions (moto enforcing IAM), and STS web identity: a missing token, an
//! unreachable STS.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::{
    CNPG_PASSWORD, DEADLINE_3S, PLAIN_TOKEN, STATIC_AWS_KEYS, TEAM_A_ROLE, aws_only_config,
    aws_token, deployment, moto_with_secrets, run_injected,
};
use crate::support::{Fault, Moto, ThrottleProxy, TokenSigner};
use crate::util::{self, rt};

/// One secret, read as [`TEAM_A_ROLE`] through web identity.
fn one_secret_as_team_a_role() -> String {
    deployment(
        &[
            ("secret-x", "aws:team-a/x#k"),
            ("aws-role-arn", TEAM_A_ROLE),
        ],
        "app",
    )
}

/// Throttling, and a 503 page without an AWS error code (a load balancer's), are
/// transient: retried with backoff, without a storm.
#[test]
fn aws_throttling_and_5xx_are_retried_with_backoff() {
    let rt = rt();
    let moto = rt.block_on(moto_with_secrets(&[
        ("team-a/one", &json!({"k": CNPG_PASSWORD}).to_string()),
        ("team-a/two", PLAIN_TOKEN),
    ]));
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
            &aws_only_config(&format!("http://127.0.0.1:{}", proxy.port)),
            &[],
            &STATIC_AWS_KEYS,
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
        &aws_only_config(&moto.url),
        &[],
        &STATIC_AWS_KEYS,
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
        &aws_only_config(&moto.url),
        &[aws_token(&signer, "app")],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("one"), CNPG_PASSWORD);
    assert_eq!(run.file("two"), PLAIN_TOKEN);
    let stderr = run.stderr();
    // moto answers an IAM refusal with a query-protocol XML body, which carries no
    // JSON error code: the status is what the SDK has (real AWS says AccessDeniedException).
    assert!(
        stderr.contains("the batch call failed; fetching one by one")
            && stderr.contains("BatchGetSecretValue of 2 secrets")
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
        &aws_only_config(&moto.url),
        &[aws_token(&signer, "app")],
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
    assert!(run.file_names().is_empty(), "nothing written");
    run.assert_no_values();
}

#[test]
fn missing_web_identity_token_is_permanent() {
    let rt = rt();
    let moto = rt.block_on(Moto::start());
    let manifest = one_secret_as_team_a_role();
    // no token written into the projected volume
    let run = run_injected(&manifest, &aws_only_config(&moto.url), &[], &[]);
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

/// An unreachable STS is reported as such (not as Secrets Manager), retried until the
/// deadline, in one line naming the role.
#[test]
fn unreachable_sts_is_named_and_retried_until_the_deadline() {
    let signer = TokenSigner::new();
    let dead = format!("http://127.0.0.1:{}", util::free_port());
    let manifest = one_secret_as_team_a_role();
    let run = run_injected(
        &manifest,
        &aws_only_config(&dead),
        &[aws_token(&signer, "app")],
        &DEADLINE_3S,
    );
    let stderr = run.gave_up_at_a_3s_deadline();
    assert!(
        stderr.starts_with("secret-injector init: gave up after 3s: aws:team-a/x: cannot reach STS for credentials as AWS role arn:aws:iam::123456789012:role/team-a-app (web identity)"),
        "{stderr}"
    );
}
