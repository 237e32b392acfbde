//! The agent's command line: what the webhook writes into the injected containers and
//! the agent parses, in one place. [`init_args`] and [`exec_command`] make the arguments
//! the patch writes; [`AgentCli`] and [`parse_exec`] read them back; [`InitArgs::options`]
//! decodes them (with the env the webhook also sets) into what `init` and `refresh` run
//! with. Pure: reading the CA file named by `VAULT_CACERT` is the caller's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::AuthMethod;
use crate::cloud::{self, AzureSettings, GcpSettings};
use crate::names;
use crate::plan::FetchPlan;

/// The init container's command: log in, fetch, write, exit.
pub const INIT: &str = "init";
/// The refresh sidecar's command: the first fetch, then re-fetch, renew and rotate.
pub const REFRESH: &str = "refresh";
/// The env-mode wrapper's command: load the env file, exec the app.
pub const EXEC: &str = "exec";

/// Log format on stderr, for both programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// The logging options of both programs' command lines.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(
        id = "log_format",
        long = "log-format",
        value_name = "LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "plain",
        env = "SECRET_INJECTOR_LOG_FORMAT"
    )]
    pub format: LogFormat,
}

/// `secret-injector-agent`: what runs in the pod.
#[derive(Debug, Parser)]
#[command(
    name = "secret-injector-agent",
    version,
    about = "The secret-injector agent, in the injected containers: log in as the pod, fetch, render, write",
    after_help = "Also: `exec [--env-file=PATH] -- CMD ARGS...`, the env-mode wrapper: load the fetched variables and exec CMD (same PID)."
)]
pub struct AgentCli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// In the injected init container: log in as the pod, fetch, render, write files.
    Init(InitArgs),
    /// In the refresh sidecar: the first fetch, then re-fetch, renew and rotate until
    /// SIGTERM, which revokes the Vault token and its leases.
    Refresh(RefreshArgs),
}

/// The arguments of the injected init container or refresh sidecar: the command, and
/// the volumes it writes to (the rest comes from env).
pub fn init_args(refresh: bool, out_dir: Option<&str>, env_dir: Option<&str>) -> Vec<String> {
    let mut args = vec![if refresh { REFRESH } else { INIT }.to_string()];
    if let Some(dir) = out_dir {
        args.push(format!("--out-dir={dir}"));
    }
    if let Some(dir) = env_dir {
        args.push(format!("--env-dir={dir}"));
    }
    args
}

/// The app container's command in env mode: the wrapper, then the app's own command.
pub fn exec_command(wrapper: &str, env_file: &str, program: Vec<String>) -> Vec<String> {
    let mut command = vec![
        wrapper.to_string(),
        EXEC.to_string(),
        format!("--env-file={env_file}"),
        "--".to_string(),
    ];
    command.extend(program);
    command
}

/// The env file and the program of an `exec` command line (after the binary's name):
/// `[exec] [--env-file=PATH | --env-file PATH] -- CMD ARGS...`, or a usage error. The
/// one parser of it, for the wrapper copied into pods and for the agent's `exec`.
pub fn parse_exec(args: &[String]) -> Result<(String, &[String]), String> {
    let mut rest = args;
    if rest.first().map(String::as_str) == Some(EXEC) {
        rest = &rest[1..];
    }
    let mut env_file = names::ENV_FILE.to_string();
    loop {
        match rest.split_first() {
            Some((a, tail)) if a == "--" => {
                if tail.is_empty() {
                    return Err("nothing to run: give the command after `--`".to_string());
                }
                return Ok((env_file, tail));
            }
            Some((a, tail)) if a == "--env-file" => match tail.split_first() {
                Some((path, tail)) => {
                    env_file = path.clone();
                    rest = tail;
                }
                None => return Err("--env-file needs a path".to_string()),
            },
            Some((a, tail)) if a.starts_with("--env-file=") => {
                env_file = a["--env-file=".len()..].to_string();
                rest = tail;
            }
            Some((a, _)) => {
                return Err(format!(
                    "unexpected `{}`: usage: exec [--env-file=PATH] -- CMD ARGS...",
                    crate::text::Escaped(a)
                ));
            }
            None => return Err("nothing to run: give the command after `--`".to_string()),
        }
    }
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// How often to re-read the secrets without a lease (±10 % jitter).
    #[arg(long, env = names::REFRESH_INTERVAL_ENV, value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// POST here after the files changed (the app's reload endpoint, in the pod).
    #[arg(long, env = names::RELOAD_URL_ENV)]
    pub reload_url: Option<String>,
    /// How long replaced credentials (a lease, or a whole Vault session) stay valid after
    /// their replacements are written, before they are revoked: time for the app to
    /// reconnect.
    #[arg(long, env = "SECRET_INJECTOR_LEASE_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease_grace: Duration,
    /// Where to serve /readyz, /healthz and /metrics. The kubelet probes the pod's IP; in
    /// the pod's network namespace (never the node's: the webhook refuses hostNetwork)
    /// 0.0.0.0 is that IP and loopback, which only the pod's own containers reach.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], names::PROBE_PORT)))]
    pub probe_listen: SocketAddr,
}

#[derive(Clone, Debug, Args)]
pub struct InitArgs {
    /// The fetch plan (JSON), as the webhook writes it.
    #[arg(long, env = names::PLAN_ENV, hide_env_values = true)]
    pub plan: String,
    /// Directory of the secrets volume to write the files into.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Directory of the env-mode volume (the env file and the copied `exec` wrapper).
    #[arg(long)]
    pub env_dir: Option<PathBuf>,
    /// Give up on transient failures (store unreachable, throttled) after this long.
    #[arg(long, default_value = "2m", env = "SECRET_INJECTOR_DEADLINE", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Timeout of one request attempt.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub attempt_timeout: Duration,
    /// Most secret locations fetched at once.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Vault address.
    #[arg(long, env = names::VAULT_ADDR_ENV)]
    pub vault_addr: Option<String>,
    /// Vault role to log in as (default: the service account's name, set by the webhook).
    #[arg(long, env = names::VAULT_ROLE_ENV, default_value = "default")]
    pub vault_role: String,
    /// Vault auth mount.
    #[arg(
        long,
        env = names::VAULT_AUTH_PATH_ENV,
        default_value = "kubernetes"
    )]
    pub vault_auth_path: String,
    /// The Vault auth method the projected token is presented to.
    #[arg(
        long,
        value_enum,
        env = names::VAULT_AUTH_METHOD_ENV,
        default_value_t = AuthMethod::Kubernetes
    )]
    pub vault_auth_method: AuthMethod,
    /// The projected service-account token (audience `vault.audience`, or the address's
    /// own from `vault.allowed_addresses`).
    #[arg(
        long,
        env = names::VAULT_TOKEN_FILE_ENV,
        default_value = names::VAULT_TOKEN_FILE
    )]
    pub vault_token_file: PathBuf,
    /// Vault Enterprise / OpenBao namespace.
    #[arg(long, env = names::VAULT_NAMESPACE_ENV)]
    pub vault_namespace: Option<String>,
    /// PEM CA bundle for Vault's TLS certificate (inline).
    #[arg(long, env = names::VAULT_CA_PEM_ENV, hide_env_values = true)]
    pub vault_ca_pem: Option<String>,
    /// PEM CA bundle for Vault's TLS certificate (file).
    #[arg(long, env = "VAULT_CACERT")]
    pub vault_cacert: Option<PathBuf>,
    /// AWS region (the SDK's AWS_REGION otherwise).
    #[arg(long, env = names::AWS_REGION_ENV)]
    pub aws_region: Option<String>,
    /// Google Secret Manager settings, as JSON (the webhook writes them).
    #[arg(long, env = cloud::GCP_ENV)]
    pub gcp: Option<String>,
    /// Azure Key Vault settings, as JSON (the webhook writes them).
    #[arg(long, env = cloud::AZURE_ENV)]
    pub azure: Option<String>,
}

/// How to reach Vault and as whom (from the init container's env and args).
#[derive(Clone, Debug)]
pub struct VaultSettings {
    pub address: String,
    pub role: String,
    pub auth_path: String,
    pub auth_method: AuthMethod,
    pub token_file: PathBuf,
    pub namespace: Option<String>,
    /// PEM CA bundle to trust, in addition to the system roots.
    pub ca_pem: Option<String>,
    pub timeout: Duration,
}

impl VaultSettings {
    /// "vault role `app` via auth/kubernetes at https://vault:8200": the identity used,
    /// for error messages.
    pub fn identity(&self) -> String {
        format!(
            "vault role `{}` via auth/{} ({}) at {}",
            self.role, self.auth_path, self.auth_method, self.address
        )
    }
}

/// How to reach each store and as whom, from the init container's env.
#[derive(Clone, Debug, Default)]
pub struct StoreSettings {
    pub vault: Option<VaultSettings>,
    pub aws_region: Option<String>,
    pub gcp: Option<GcpSettings>,
    pub azure: Option<AzureSettings>,
}

/// What `init` (and each fetch of `refresh`) runs with.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub plan: FetchPlan,
    /// Where the files go (needed when the plan has files).
    pub out_dir: Option<PathBuf>,
    pub env_dir: Option<PathBuf>,
    pub deadline: Duration,
    pub concurrency: usize,
    /// How to reach each store and as whom.
    pub stores: StoreSettings,
    /// Per-attempt timeout of one request.
    pub attempt_timeout: Duration,
}

impl InitArgs {
    /// Decode the arguments and env into options; `read_ca` reads the file `VAULT_CACERT`
    /// names (only when no inline CA is set). The error is the one line to print.
    pub fn options(
        self,
        read_ca: impl FnOnce(&Path) -> std::io::Result<String>,
    ) -> Result<InitOptions, String> {
        let plan: FetchPlan = serde_json::from_str(&self.plan)
            .map_err(|e| format!("{} is not a valid plan: {e}", names::PLAN_ENV))?;
        let ca_pem = match (&self.vault_ca_pem, &self.vault_cacert) {
            (Some(pem), _) if !pem.trim().is_empty() => Some(pem.clone()),
            (_, Some(path)) => Some(
                read_ca(path)
                    .map_err(|e| format!("cannot read VAULT_CACERT {}: {e}", path.display()))?,
            ),
            _ => None,
        };
        let vault = self
            .vault_addr
            .filter(|a| !a.is_empty())
            .map(|address| VaultSettings {
                address,
                role: self.vault_role,
                auth_path: self.vault_auth_path,
                auth_method: self.vault_auth_method,
                token_file: self.vault_token_file,
                namespace: self.vault_namespace.filter(|n| !n.is_empty()),
                ca_pem,
                timeout: self.attempt_timeout,
            });
        Ok(InitOptions {
            plan,
            out_dir: self.out_dir,
            env_dir: self.env_dir,
            deadline: self.deadline,
            concurrency: self.concurrency,
            stores: StoreSettings {
                vault,
                aws_region: self.aws_region,
                gcp: json_setting(self.gcp.as_deref(), cloud::GCP_ENV)?,
                azure: json_setting(self.azure.as_deref(), cloud::AZURE_ENV)?,
            },
            attempt_timeout: self.attempt_timeout,
        })
    }
}

/// Settings the webhook handed over as JSON in `env`; empty means none.
fn json_setting<T: serde::de::DeserializeOwned>(
    raw: Option<&str>,
    env: &str,
) -> Result<Option<T>, String> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => serde_json::from_str(raw)
            .map(Some)
            .map_err(|e| format!("{env} is not valid: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn parsed(args: Vec<String>) -> AgentCommand {
        let mut line = vec!["secret-injector-agent".to_string()];
        line.extend(args);
        line.push("--plan={}".to_string());
        AgentCli::try_parse_from(line).unwrap().command
    }

    /// What the patch writes is what the agent reads back.
    #[test]
    fn the_init_and_refresh_arguments_the_patch_writes_are_what_the_agent_parses() {
        let AgentCommand::Init(init) = parsed(init_args(false, Some("/out"), Some("/env"))) else {
            panic!("not init")
        };
        assert_eq!(init.out_dir.as_deref(), Some(Path::new("/out")));
        assert_eq!(init.env_dir.as_deref(), Some(Path::new("/env")));
        let AgentCommand::Init(init) = parsed(init_args(false, None, Some("/env"))) else {
            panic!("not init")
        };
        assert_eq!((init.out_dir, init.env_dir.is_some()), (None, true));
        let mut args = init_args(true, Some("/out"), None);
        args.push("--interval=5m".into());
        let AgentCommand::Refresh(refresh) = parsed(args) else {
            panic!("not refresh")
        };
        assert_eq!(refresh.init.out_dir.as_deref(), Some(Path::new("/out")));
        assert_eq!(refresh.interval, Duration::from_secs(300));
    }

    #[test]
    fn the_wrapped_command_the_patch_writes_is_what_exec_parses() {
        let command = exec_command("/w/exec", "/w/env.json", strings(&["/app", "--", "-x"]));
        assert_eq!(command[0], "/w/exec");
        let (file, argv) = parse_exec(&command[1..]).unwrap();
        assert_eq!((file.as_str(), argv), ("/w/env.json", &command[4..]));
        assert_eq!(argv, strings(&["/app", "--", "-x"]));
    }

    #[test]
    fn the_command_lines_of_exec_are_accepted() {
        let a = strings(&["exec", "--env-file=/e.json", "--", "/app", "--flag"]);
        let (file, argv) = parse_exec(&a).unwrap();
        assert_eq!((file.as_str(), argv), ("/e.json", &a[3..]));
        let a = strings(&["--env-file", "/f.json", "--", "app"]);
        let (file, argv) = parse_exec(&a).unwrap();
        assert_eq!((file.as_str(), argv), ("/f.json", &a[3..]));
        let a = strings(&["--", "app", "--", "x"]);
        let (file, argv) = parse_exec(&a).unwrap();
        assert_eq!((file.as_str(), argv), (names::ENV_FILE, &a[1..]));
    }

    #[test]
    fn exec_usage_errors_say_what_is_missing() {
        assert!(
            parse_exec(&strings(&["exec"]))
                .unwrap_err()
                .contains("after `--`")
        );
        assert!(
            parse_exec(&strings(&["exec", "--"]))
                .unwrap_err()
                .contains("after `--`")
        );
        let e = parse_exec(&strings(&["--env-file"])).unwrap_err();
        assert!(e.contains("needs a path"), "{e}");
        let e = parse_exec(&strings(&["app"])).unwrap_err();
        assert!(e.contains("unexpected `app`"), "{e}");
    }

    #[test]
    fn init_arguments_decode_into_options() {
        let vault = |extra: &[&str]| {
            let plan = serde_json::to_string(&FetchPlan::default()).unwrap();
            let mut line = strings(&["a", "init", "--plan", &plan]);
            line.extend(strings(&[
                "--vault-addr=https://v:8200",
                "--vault-cacert=/ca.pem",
            ]));
            line.extend(strings(extra));
            let AgentCommand::Init(init) = AgentCli::try_parse_from(line).unwrap().command else {
                panic!("not init")
            };
            init
        };
        let options = vault(&[])
            .options(|p| Ok(format!("PEM of {}", p.display())))
            .unwrap();
        let settings = options.stores.vault.unwrap();
        assert_eq!(settings.ca_pem.as_deref(), Some("PEM of /ca.pem"));
        assert_eq!(settings.timeout, options.attempt_timeout);
        let inline = vault(&["--vault-ca-pem", "INLINE"])
            .options(|_| unreachable!())
            .unwrap();
        assert_eq!(
            inline.stores.vault.unwrap().ca_pem.as_deref(),
            Some("INLINE")
        );
        let e = vault(&[])
            .options(|_| Err(std::io::Error::other("gone")))
            .unwrap_err();
        assert_eq!(e, "cannot read VAULT_CACERT /ca.pem: gone");
        let e = vault(&["--gcp", "{"])
            .options(|_| Ok(String::new()))
            .unwrap_err();
        assert!(e.starts_with(cloud::GCP_ENV), "{e}");
        let mut bad = vault(&[]);
        bad.plan = "nope".into();
        let e = bad.options(|_| Ok(String::new())).unwrap_err();
        assert!(e.contains("is not a valid plan"), "{e}");
    }
}
