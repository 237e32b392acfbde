//! The contract between the webhook and the pod, round-tripped: the init container that
//! the patch builds is parsed by the agent's real command line (`secret-injector-agent
//! init`, `contract::args`) into the real init options. Every env variable the patch sets must be one that `init` reads
//! (or one the AWS SDK or the logger reads), so renaming one side fails here, not in a
//! pod.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use serde_json::{Value, json};

use contract::args::{AgentCli as Cli, AgentCommand as Command, InitArgs};
use contract::names;
use contract::plan::FetchPlan;
use contract::reference::Provider;
use webhook::config::Config;
use webhook::mutation::pod::PodView;
use webhook::mutation::spec::Context;
use webhook::{Outcome, mutate};

/// Variables the patch sets for readers other than `init`'s options.
const READ_ELSEWHERE: &[&str] = &[
    names::LOG_ENV,           // the logger
    names::POD_NAMESPACE_ENV, // the log span of `init`
    names::POD_NAME_ENV,      // the log span of `init`
    // the AWS SDK: web identity, endpoints, EKS Pod Identity
    names::AWS_ROLE_ARN_ENV,
    names::AWS_WEB_IDENTITY_TOKEN_FILE_ENV,
    names::AWS_ROLE_SESSION_NAME_ENV,
    names::AWS_STS_REGIONAL_ENDPOINTS_ENV,
    names::AWS_DEFAULT_REGION_ENV,
    names::AWS_ENDPOINT_URL_ENV,
    names::AWS_ENDPOINT_URL_SECRETS_MANAGER_ENV,
    names::AWS_ENDPOINT_URL_SSM_ENV,
    names::AWS_CONTAINER_CREDENTIALS_FULL_URI_ENV,
    names::AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_ENV,
];

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A config that sets every optional value the patch hands to the pod.
fn full_config() -> Config {
    let mut config = Config::default();
    config.vault.ca_pem = Some(CA_PEM.to_string());
    config.vault.namespace = "team-a/".to_string();
    config.aws.endpoint_url = Some("http://aws.local:4566".to_string());
    config.aws.secretsmanager_endpoint_url = Some("http://sm.local:4566".to_string());
    config.aws.ssm_endpoint_url = Some("http://ssm.local:4566".to_string());
    config.gcp.project = "my-project".to_string();
    config.gcp.workload_identity_provider = GCP_PROVIDER.to_string();
    config.gcp.service_account = "app@my-project.iam.gserviceaccount.com".to_string();
    config.gcp.sts_endpoint = "http://sts.local".to_string();
    config.azure.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string();
    config.azure.key_vault_endpoint = Some("http://kv.local/{vault}".to_string());
    config
}

const GCP_PROVIDER: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/k8s/providers/cluster";

/// The projected token volume mounted at the directory of `file`: its audience.
pub(crate) fn token_audience(pod: &Value, init: &Value, file: &str) -> String {
    let (dir, name) = file.rsplit_once('/').unwrap();
    let mount = init["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}: {}", init["volumeMounts"]));
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume exists");
    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["path"], name, "{volume}");
    source["audience"].as_str().unwrap().to_string()
}

/// All five stores and every setting: Google's and Azure's settings reach `init` as the
/// structures it reads, their token files are the projected tokens the patch mounts,
/// with the audiences the clouds expect, and SSM's endpoint reaches the SDK.
#[test]
fn a_pod_with_all_five_stores_reaches_init() {
    use contract::cloud::{AzureSettings, GcpSettings};
    let config = full_config();
    let (pod, init) = injected_with(
        &config,
        json!({
            "secret-injector.io/secret-db": "vault:secret/data/db#password",
            "secret-injector.io/secret-api": "aws:prod/api#key",
            "secret-injector.io/secret-param": "ssm:/prod/param",
            "secret-injector.io/secret-gcp": "gcp:db-password",
            "secret-injector.io/secret-azure": "azure:my-vault/db-password",
        }),
        json!([{"name": "app", "image": "app"}]),
    );
    let args = parse_init(&init);
    let plan = plan_of(&args);
    for p in Provider::ALL {
        assert!(plan.uses(p), "{p}");
    }
    let gcp: GcpSettings = serde_json::from_str(args.gcp.as_deref().unwrap()).unwrap();
    assert_eq!(gcp.project.as_deref(), Some("my-project"));
    assert_eq!(gcp.sts_endpoint, "http://sts.local");
    assert_eq!(
        gcp.service_account.as_deref(),
        Some("app@my-project.iam.gserviceaccount.com")
    );
    let file = gcp.token_file.expect("a projected token with federation");
    assert_eq!(token_audience(&pod, &init, &file), GCP_PROVIDER);
    let azure: AzureSettings = serde_json::from_str(args.azure.as_deref().unwrap()).unwrap();
    assert_eq!(azure.client_id, "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c");
    assert_eq!(azure.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(
        azure.key_vault_endpoint.as_deref(),
        Some("http://kv.local/{vault}")
    );
    assert_eq!(
        token_audience(&pod, &init, &azure.token_file),
        config.azure.audience
    );
    let env = init["env"].to_string();
    assert!(env.contains("http://ssm.local:4566"), "{env}");
}

/// The pod after the webhook's patch, and its injected init container.
fn injected(annotations: Value, containers: Value) -> (Value, Value) {
    injected_with(&Config::default(), annotations, containers)
}

fn injected_with(config: &Config, annotations: Value, containers: Value) -> (Value, Value) {
    let mut pod = json!({
        "metadata": {"name": "app", "namespace": "team-a", "annotations": annotations},
        "spec": {"serviceAccountName": "app-sa", "containers": containers},
    });
    let view: PodView = serde_json::from_value(pod.clone()).unwrap();
    let ctx = Context {
        service_account_role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
        azure_client_id: Some("0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c".into()),
        azure_tenant_id: None,
    };
    let Outcome::Injected { patch, .. } = mutate(&view, config, &ctx) else {
        panic!("not injected");
    };
    json_patch::patch(&mut pod, &patch.to_json_patch()).unwrap();
    let init = pod["spec"]["initContainers"][0].clone();
    assert!(
        init["name"] == names::INIT_CONTAINER || init["name"] == names::REFRESH_CONTAINER,
        "{init}"
    );
    (pod, init)
}

/// The init container's args and env, through the real parser. Env variables become
/// the options that read them; the parser's own env lookups are switched off, so the
/// test process's env (a `VAULT_ADDR` in a developer's shell) cannot answer for the pod.
pub(crate) fn parse_init(container: &Value) -> InitArgs {
    match parse_agent(container, "init") {
        Command::Init(args) => args,
        other => panic!("not init: {other:?}"),
    }
}

/// The injected container's args and env through the real parser of `subcommand`.
fn parse_agent(container: &Value, subcommand: &str) -> Command {
    let cli = Cli::command().mut_subcommand(subcommand, |sub| {
        sub.mut_args(|a| a.env(None::<&'static str>))
    });
    let by_env = env_to_option(subcommand);
    let mut argv = vec!["secret-injector-agent".to_string()];
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
            (Some(_), None) => panic!("{name} has no literal value, but {subcommand} reads it"),
            (None, _) => assert!(
                READ_ELSEWHERE.contains(&name),
                "the injected container sets {name}, which nothing in the pod reads"
            ),
        }
    }
    let parsed = cli
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => cli.command,
        Err(e) => panic!("the injected container's command line does not parse: {e}\n{argv:?}"),
    }
}

/// Which option of `subcommand` each env variable sets.
fn env_to_option(subcommand: &str) -> BTreeMap<String, String> {
    let cli = Cli::command();
    let sub = cli.find_subcommand(subcommand).expect("the subcommand");
    sub.get_arguments()
        .filter_map(|a| {
            Some((
                a.get_env()?.to_str()?.to_string(),
                a.get_long()?.to_string(),
            ))
        })
        .collect()
}

/// The refresh sidecar is the init container kept running: the same options, plus its
/// interval, through the real `refresh` parser.
#[test]
fn a_refresh_pod_reaches_the_sidecar_with_its_interval_and_the_init_options() {
    let (pod, sidecar) = injected_with(
        &full_config(),
        json!({
            "secret-injector.io/secret-db": "vault:database/creds/app",
            "secret-injector.io/secret-api": "aws:prod/api#key",
            "secret-injector.io/refresh-interval": "90s",
        }),
        json!([{"name": "app", "image": "app"}]),
    );
    assert_eq!(sidecar["name"], names::REFRESH_CONTAINER);
    let Command::Refresh(args) = parse_agent(&sidecar, "refresh") else {
        panic!("not refresh");
    };
    assert_eq!(args.interval, std::time::Duration::from_secs(90));
    assert_eq!(args.probe_listen.port(), names::PROBE_PORT);
    assert_eq!(
        sidecar["startupProbe"]["httpGet"]["port"],
        names::PROBE_PORT
    );
    assert_eq!(args.init.vault_ca_pem.as_deref(), Some(CA_PEM));
    assert_eq!(
        args.init.out_dir,
        Some(PathBuf::from(names::INIT_FILES_DIR))
    );
    let plan = plan_of(&args.init);
    assert!(plan.uses(Provider::Vault) && plan.uses(Provider::Aws));
    assert!(
        pod["spec"]["containers"][0]["volumeMounts"]
            .to_string()
            .contains(names::FILES_VOLUME)
    );
}

/// The plan, through the agent's own decoding of its args and env
/// (`InitArgs::options`, what `init` and `refresh` run with). The webhook hands Vault's
/// CA over inline, so no file is read.
fn plan_of(args: &InitArgs) -> FetchPlan {
    let options = args
        .clone()
        .options(|path| Err(std::io::Error::other(format!("reads {}", path.display()))))
        .expect("the agent decodes what the patch writes");
    if let Some(vault) = &options.stores.vault {
        assert_eq!(Some(&vault.address), args.vault_addr.as_ref());
        assert_eq!(vault.ca_pem, args.vault_ca_pem);
    }
    options.plan
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
    assert_eq!(args.vault_auth_method, contract::auth::AuthMethod::Jwt);
    assert_eq!(args.vault_auth_path, "jwt-prod");
    assert_eq!(
        args.vault_token_file,
        PathBuf::from(names::VAULT_TOKEN_FILE)
    );
    assert_eq!(args.out_dir, Some(PathBuf::from(names::INIT_FILES_DIR)));
    assert_eq!(args.env_dir, None);
    let plan = plan_of(&args);
    assert!(plan.secrets.contains_key("db") && plan.uses(Provider::Vault));
    // The token file the options point at is the projected token the patch mounts.
    assert_eq!(
        token_audience(&pod, &init, args.vault_token_file.to_str().unwrap()),
        config.vault.audience
    );
    assert!(
        pod["spec"]["volumes"]
            .to_string()
            .contains(names::FILES_VOLUME)
    );
}

/// Both stores, files only, and every optional setting of the config: the CA, the
/// namespace and the AWS endpoints reach `init` or the SDK under the names they read.
#[test]
fn a_pod_with_both_stores_and_every_setting_reaches_init() {
    let config = full_config();
    let (_, init) = injected_with(
        &config,
        json!({
            "secret-injector.io/secret-db": "vault:secret/data/db#password",
            "secret-injector.io/secret-api": "aws:prod/api#key",
        }),
        json!([{"name": "app", "image": "app"}]),
    );
    let args = parse_init(&init);
    assert_eq!(args.vault_ca_pem.as_deref(), Some(CA_PEM));
    assert_eq!(args.vault_namespace.as_deref(), Some("team-a/"));
    assert_eq!(args.aws_region.as_deref(), Some(config.aws.region.as_str()));
    assert_eq!(args.out_dir, Some(PathBuf::from(names::INIT_FILES_DIR)));
    let plan = plan_of(&args);
    assert!(plan.uses(Provider::Vault) && plan.uses(Provider::Aws) && !plan.env_mode());
    let env: BTreeMap<&str, &str> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env[names::AWS_ENDPOINT_URL_ENV], "http://aws.local:4566");
    assert_eq!(
        env[names::AWS_ENDPOINT_URL_SECRETS_MANAGER_ENV],
        "http://sm.local:4566"
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
    let argv: Vec<String> = app["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], names::EXEC_BINARY);
    let (env_file, program) = contract::args::parse_exec(&argv[1..]).unwrap();
    assert_eq!(env_file, names::ENV_FILE);
    assert_eq!(program, vec!["/app".to_string()]);
    assert!(
        app["volumeMounts"]
            .to_string()
            .contains(names::ENV_MOUNT_PATH)
    );
}
