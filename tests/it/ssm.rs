//! AWS SSM Parameter Store (moto): SecureStrings decrypted, versions and labels, `#key`
//! of a JSON value, a whole path with `env-from`, a batch of parameters in one call, and
//! the role's own permissions (moto enforcing IAM).

use std::time::Duration;

use crate::fixtures::{
    CNPG_PASSWORD, DB_PASSWORD, DB_PASSWORD_OLD, JWT_SECRET, PLAIN_TOKEN, STATIC_AWS_KEYS,
    aws_only_config, aws_token, deployment, run_injected,
};
use crate::support::{Moto, TokenSigner};
use crate::util::rt;

/// Parameters of team-a: a SecureString with two versions and a label on the first, a
/// JSON String, and an app path for `env-from`.
async fn moto_with_parameters() -> Moto {
    let moto = Moto::start().await;
    moto.put_parameter("/team-a/db/password", DB_PASSWORD_OLD, true)
        .await;
    moto.put_parameter("/team-a/db/password", DB_PASSWORD, true)
        .await;
    moto.ssm()
        .await
        .label_parameter_version()
        .name("/team-a/db/password")
        .parameter_version(1)
        .labels("previous")
        .send()
        .await
        .unwrap();
    moto.put_parameter(
        "/team-a/cnpg",
        &format!(r#"{{"username":"app","password":"{CNPG_PASSWORD}"}}"#),
        false,
    )
    .await;
    moto.put_parameter("/team-a/app/JWT_SECRET", JWT_SECRET, true)
        .await;
    moto.put_parameter("/team-a/app/API_TOKEN", PLAIN_TOKEN, true)
        .await;
    moto
}

#[test]
fn parameters_versions_labels_keys_and_paths() {
    let rt = rt();
    let moto = rt.block_on(moto_with_parameters());
    let manifest = deployment(
        &[
            ("secret-password", "ssm:/team-a/db/password"),
            ("secret-v1", "ssm:/team-a/db/password?version=1"),
            ("secret-previous", "ssm:/team-a/db/password?label=previous"),
            ("secret-cnpg-password", "ssm:/team-a/cnpg#password"),
            (
                "template-app.env",
                "{% for k, v in secrets.app | dictsort %}{{ k }}={{ v }}\n{% endfor %}",
            ),
            ("secret-app", "ssm:/team-a/app/"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &aws_only_config(&moto.url),
        &[],
        &STATIC_AWS_KEYS,
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_eq!(run.file("password"), DB_PASSWORD);
    assert_eq!(run.file("v1"), DB_PASSWORD_OLD);
    assert_eq!(run.file("previous"), DB_PASSWORD_OLD);
    assert_eq!(run.file("cnpg-password"), CNPG_PASSWORD);
    assert_eq!(
        run.file("app.env"),
        format!("API_TOKEN={PLAIN_TOKEN}\nJWT_SECRET={JWT_SECRET}\n")
    );
    let stderr = run.stderr();
    // The two current parameters (`password`, `cnpg`) came in one GetParameters call;
    // the versioned ones and the path were read on their own.
    let batches: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("batch call") && l.contains("GetParameters"))
        .collect();
    assert_eq!(batches.len(), 1, "{stderr}");
    assert!(
        batches[0].contains("asked=2") && batches[0].contains("answered=2"),
        "{}",
        batches[0]
    );
    run.assert_no_values();
}

#[test]
fn a_path_loads_as_environment_with_env_from() {
    let rt = rt();
    let moto = rt.block_on(moto_with_parameters());
    let manifest = deployment(&[("env-from", "ssm:/team-a/app/")], "app");
    let run = run_injected(
        &manifest,
        &aws_only_config(&moto.url),
        &[],
        &STATIC_AWS_KEYS,
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.env_dir().join("env.json")).unwrap()).unwrap();
    let text = env.to_string();
    assert!(
        text.contains("JWT_SECRET") && text.contains(JWT_SECRET),
        "{text}"
    );
    assert!(
        text.contains("API_TOKEN") && text.contains(PLAIN_TOKEN),
        "{text}"
    );
    run.assert_no_values();
}

#[test]
fn a_missing_parameter_is_permanent_and_named() {
    let rt = rt();
    let moto = rt.block_on(moto_with_parameters());
    let manifest = deployment(
        &[
            ("secret-a", "ssm:/team-a/db/password"),
            ("secret-b", "ssm:/team-a/nope"),
        ],
        "app",
    );
    let run = run_injected(
        &manifest,
        &aws_only_config(&moto.url),
        &[],
        &STATIC_AWS_KEYS,
    );
    let last = run.failed_without_retry();
    assert!(
        last.contains("ssm:/team-a/nope") && last.contains("ParameterNotFound"),
        "{last}"
    );
    assert!(run.file_names().is_empty(), "nothing written");
    run.assert_no_values();
}

/// The role may read parameters: its web identity gets them. A role that may only
/// describe them is refused with one line naming the reference and the role.
#[test]
fn parameter_access_is_the_roles_own() {
    let rt = rt();
    let signer = TokenSigner::new();
    let parameters = [("/team-a/one", CNPG_PASSWORD), ("/team-a/two", PLAIN_TOKEN)];
    let (moto, arn) = rt.block_on(Moto::start_enforcing_with(
        "team-a-app",
        "ssm:GetParameter*",
        &[],
        &parameters,
    ));
    let manifest = deployment(
        &[
            ("secret-one", "ssm:/team-a/one"),
            ("secret-two", "ssm:/team-a/two"),
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
    run.assert_no_values();
    drop(moto);

    let (moto, arn) = rt.block_on(Moto::start_enforcing_with(
        "team-a-describer",
        "ssm:DescribeParameters",
        &[],
        &parameters[..1],
    ));
    let manifest = deployment(
        &[("secret-one", "ssm:/team-a/one"), ("aws-role-arn", &arn)],
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
        last.contains("ssm:/team-a/one")
            && (last.contains("HTTP 403") || last.contains("AccessDenied"))
            && last.contains(&arn),
        "names the reference, the cause and the role: {last}"
    );
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert!(run.file_names().is_empty(), "nothing written");
    run.assert_no_values();
}
