//! The webhook's command line: `serve`, `inject`, `certs`. What runs in the pod
//! (`init`, `refresh`, `exec`) is the agent's: `contract::args`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use contract::args::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "secret-injector",
    version,
    about = "Inject secrets from Vault/OpenBao, AWS Secrets Manager and Parameter Store, Google Secret Manager and Azure Key Vault into pods, fetched with the pod's own identity",
    after_help = "In the pod, the injected containers run `secret-injector-agent init|refresh|exec`."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
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
