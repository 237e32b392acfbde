//! The contract between the webhook and the pod, round-tripped: the init container that
//! the patch builds is parsed by the real command line (`secret-injector init`) into the
//! real init options. Every env variable the patch sets must be one that `init` reads
//! (or one the AWS SDK or the logger reads), so renaming one side fails here, not in a
//! pod.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use serde_json::{Value, json};

use secret_injector::cli::{Cli, Command, InitArgs};
use secret_injector::config::Config;
use secret_injector::contract::names;
use secret_injector::contract::plan::FetchPlan;
use secret_injector::contract::reference::Provider;
use secret_injector::mutation::pod::PodView;
use secret_injector::mutation::spec::Context;
use secret_injector::{Outcome, mutate};

/// Variables the patch sets for readers other than `init`'s options.
const READ_ELSEWHERE: &[&str] = &[
    "RUST_LOG",               // the logger
    names::POD_NAMESPACE_ENV, // the log span of `init`
    names::POD_NAME_ENV,      // the log span of `init`
    "AWS_ROLE_ARN",           // the AWS SDK's web-identity provider
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", // EKS Pod Identity
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The pod after the webhook's patch, and its injected init container.
fn injected(annotations: Value, containers: Value) -> (Value, Value) {
    let mut pod = json!({
        "metadata": {"name": "app", "namespace": "team-a", "annotations": annotations},
        "spec": {"serviceAccountName": "app-sa", "containers": containers},
    });
    let view: PodView = serde_json::from_value(pod.clone()).unwrap();
    let ctx = Context {
        service_account_role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
    };
    let Outcome::Injected { patch, .. } = mutate(&view, &Config::default(), &ctx) else {
        panic!("not injected");
    };
    json_patch::patch(&mut pod, &patch).unwrap();
    let init = pod["spec"]["initContainers"][0].clone();
    assert_eq!(init["name"], names::INIT_CONTAINER);
    (pod, init)
}

/// The init container's args and env, through the real parser. Env variables become
/// the options that read them (clap reads the process's env, which tests must not set).
fn parse_init(container: &Value) -> InitArgs {
    let cli = Cli::command();
    let init = cli.find_subcommand("init").expect("an init subcommand");
    let by_env: BTreeMap<String, String> = init
        .get_arguments()
        .filter_map(|a| {
            Some((
                a.get_env()?.to_str()?.to_string(),
                a.get_long()?.to_string(),
            ))
        })
        .collect();
    let mut argv = vec!["secret-injector".to_string()];
    argv.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        match (by_env.get(name), e["value"].as_str()) {
            (Some(long), Some(value)) => argv.push(format!("--{long}={value}")),
            (Some(_), None) => panic!("{name} has no literal value, but init reads it"),
            (None, _) => assert!(
                READ_ELSEWHERE.contains(&name),
                "the init container sets {name}, which nothing in the pod reads"
            ),
        }
    }
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Init(args),
            ..
        }) => args,
        Ok(other) => panic!("not init: {other:?}"),
        Err(e) => panic!("the init container's command line does not parse: {e}\n{argv:?}"),
    }
}

fn plan_of(args: &InitArgs) -> FetchPlan {
    serde_json::from_str(&args.plan).expect("the plan parses")
}

#[test]
fn a_vault_pod_reaches_init_with_its_role_token_and_plan() {
    let (pod, init) = injected(
        json!({
            "secret-injector.io/secret-db": "vault:secret/data/db#password",
            "secret-injector.io/vault-auth-method": "jwt",
            "secret-injector.io/vault-auth-path": "jwt-prod",
        }),
        json!([{"name": "app", "image": "app"}]),
    );
    let args = parse_init(&init);
    let config = Config::default();
    assert_eq!(
        args.vault_addr.as_deref(),
        Some(config.vault.address.as_str())
    );
    assert_eq!(args.vault_role, "app-sa");
    assert_eq!(
        args.vault_auth_method,
        secret_injector::contract::auth::AuthMethod::Jwt
    );
    assert_eq!(args.vault_auth_path, "jwt-prod");
    assert_eq!(
        args.vault_token_file,
        PathBuf::from(names::VAULT_TOKEN_FILE)
    );
    assert_eq!(args.out_dir, Some(PathBuf::from(names::INIT_FILES_DIR)));
    assert_eq!(args.env_dir, None);
    let plan = plan_of(&args);
    assert!(plan.secrets.contains_key("db") && plan.uses(Provider::Vault));
    // The token the options point at is the one the patch mounts.
    let mounts = init["volumeMounts"].to_string();
    assert!(
        names::VAULT_TOKEN_FILE.starts_with(&format!("{}/vault", names::TOKEN_DIR))
            && mounts.contains(&format!("{}/vault", names::TOKEN_DIR)),
        "{mounts}"
    );
    assert!(
        pod["spec"]["volumes"]
            .to_string()
            .contains(names::FILES_VOLUME)
    );
}

#[test]
fn an_aws_pod_reaches_init_with_its_region_and_no_vault_options() {
    let (_, init) = injected(
        json!({
            "secret-injector.io/secret-db": "aws:prod/db#password",
            "secret-injector.io/aws-region": "eu-west-1",
        }),
        json!([{"name": "app", "image": "app"}]),
    );
    let args = parse_init(&init);
    assert_eq!(args.aws_region.as_deref(), Some("eu-west-1"));
    assert_eq!(args.vault_addr, None);
    assert!(plan_of(&args).uses(Provider::Aws));
    let env = init["env"].to_string();
    assert!(env.contains("arn:aws:iam::123456789012:role/app"), "{env}");
}

#[test]
fn an_env_mode_pod_with_both_stores_reaches_init_and_exec() {
    let (pod, init) = injected(
        json!({
            "secret-injector.io/env-DB_PASSWORD": "vault:secret/data/db#password",
            "secret-injector.io/env-from": "aws:prod/app",
            "secret-injector.io/secret-cert": "aws:prod/cert#pem",
        }),
        json!([{"name": "app", "image": "app", "command": ["/app"]}]),
    );
    let args = parse_init(&init);
    assert_eq!(args.env_dir, Some(PathBuf::from(names::INIT_ENV_DIR)));
    assert_eq!(args.out_dir, Some(PathBuf::from(names::INIT_FILES_DIR)));
    assert!(args.vault_addr.is_some());
    let plan = plan_of(&args);
    assert!(plan.env_mode() && plan.uses(Provider::Vault) && plan.uses(Provider::Aws));
    // The app starts through `exec`, whose own parser takes the patched command.
    let app = &pod["spec"]["containers"][0];
    let mut argv: Vec<String> = app["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], names::EXEC_BINARY);
    argv[0] = "secret-injector".into();
    match Cli::try_parse_from(&argv).unwrap().command {
        Command::Exec(exec) => {
            assert_eq!(exec.env_file, PathBuf::from(names::ENV_FILE));
            assert_eq!(exec.argv, vec!["/app".to_string()]);
        }
        other => panic!("not exec: {other:?}"),
    }
    assert!(
        app["volumeMounts"]
            .to_string()
            .contains(names::ENV_MOUNT_PATH)
    );
}
