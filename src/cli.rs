//! The command line: `serve`, `inject`, `certs` (and, in the pod, `init`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::contract::auth::AuthMethod;
use crate::contract::{cloud, names};
use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "secret-injector",
    version,
    about = "Inject secrets from Vault/OpenBao, AWS Secrets Manager and Parameter Store, Google Secret Manager and Azure Key Vault into pods, fetched with the pod's own identity"
)]
pub struct Cli {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "plain",
        env = "SECRET_INJECTOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and its admin endpoints (HTTP).
    Serve(ServeArgs),
    /// Apply the webhook's mutation to manifests offline and print the result as YAML.
    Inject(InjectArgs),
    /// Write a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
    /// In the injected init container: log in as the pod, fetch, render, write files.
    Init(InitArgs),
    /// Env-mode wrapper: load the fetched variables and exec the app (same PID).
    Exec(ExecArgs),
    /// In the refresh sidecar: the first fetch, then re-fetch, renew and rotate until
    /// SIGTERM, which revokes the Vault token and its leases.
    Refresh(RefreshArgs),
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

/// Whether `serve` uses the Kubernetes API: the ServiceAccount cache (role ARNs and
/// Azure client IDs) and, in a pod, the webhook's own image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeMode {
    /// `required` in a cluster (`KUBERNETES_SERVICE_HOST` set); elsewhere a kubeconfig
    /// when there is one, or off with a warning.
    Auto,
    /// Refuse to start without a Kubernetes config, and stay not ready until the
    /// ServiceAccount cache has synced.
    Required,
    /// Never: role ARNs and client IDs come from pod annotations only.
    Off,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The fetch plan (JSON), as the webhook writes it.
    #[arg(long, env = names::PLAN_ENV, hide_env_values = true)]
    pub plan: String,
    /// Directory of the secrets volume to write the files into.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Directory of the env-mode volume (env file and this binary).
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

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The env file the init container wrote.
    #[arg(long, default_value = names::ENV_FILE)]
    pub env_file: PathBuf,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, default_value = "0.0.0.0:8443", env = "SECRET_INJECTOR_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics).
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "SECRET_INJECTOR_ADMIN_LISTEN"
    )]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain; re-read when the file changes.
    #[arg(
        long,
        env = "SECRET_INJECTOR_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; re-read when the file changes.
    #[arg(long, env = "SECRET_INJECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate chained to a CA in this PEM file on /mutate (the
    /// API server's, configured in its AdmissionConfiguration). Off by default.
    #[arg(long, env = "SECRET_INJECTOR_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: accept only a client certificate whose common name or a DNS
    /// name is this (repeat for several).
    #[arg(long = "client-name", requires = "client_ca")]
    pub client_names: Vec<String>,
    /// Generate a CA and a serving certificate at start (for trying it out and tests).
    #[arg(long)]
    pub self_signed: bool,
    /// Where --self-signed writes ca.crt, tls.crt, tls.key and ca-bundle.b64.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("secret-injector"))]
    pub self_signed_dir: PathBuf,
    /// Extra DNS names or IPs for the --self-signed certificate.
    #[arg(long = "self-signed-name")]
    pub self_signed_names: Vec<String>,
    /// Webhook configuration (YAML); every key can also be set as
    /// SECRET_INJECTOR_<SECTION>_<KEY> (for example SECRET_INJECTOR_VAULT_ADDRESS).
    #[arg(long, env = "SECRET_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// Time to answer one request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Time a client has for the TLS handshake, and again for its request headers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How long to keep serving (reporting not ready) after SIGTERM before closing the
    /// listener, so no review is sent to a closed port during a rollout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// Close a webhook connection after this long without a request (HTTP/2 keep-alive
    /// pings do not count); the API server opens a new one for its next review.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Large reviews (bodies over 64 KiB) processed at once, each on a thread of its
    /// own (default: the CPUs the webhook may use, 1 under the Deployment's 500m
    /// limit). Smaller ones, nearly all pods, take well under a millisecond and run on
    /// the async workers.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub review_threads: Option<u16>,
    /// The Kubernetes API (ServiceAccounts for `eks.amazonaws.com/role-arn` and
    /// `azure.workload.identity/client-id`; in a pod, its own image): `required` refuses
    /// to start without it and is not ready until the cache has synced; `auto` is
    /// `required` in a cluster and best effort elsewhere; `off` uses pod annotations only.
    #[arg(long, value_enum, default_value_t = KubeMode::Auto, env = "SECRET_INJECTOR_KUBE")]
    pub kube: KubeMode,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifest file (YAML or JSON, multi-document), or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Webhook configuration (YAML), as `serve` reads it.
    #[arg(long, env = "SECRET_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "secret-injector")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, default_value = "secret-injector-system")]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key and ca-bundle.b64 into.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Extra DNS names or IP addresses for the serving certificate.
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Validity of the serving certificate, in days (the CA gets twice as long).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Sign with this existing CA certificate instead of a new CA (with --ca-key).
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// Key of the existing CA.
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Also write client.crt and client.key, a client certificate with this name for
    /// the API server to present to `serve --client-ca` (see README, Security).
    #[arg(long)]
    pub client: Option<String>,
}
