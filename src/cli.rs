//! The command line: `serve`, `inject`, `certs` (and, in the pod, `init`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "secret-injector",
    version,
    about = "Inject secrets from Vault/OpenBao and AWS Secrets Manager into pods, fetched with the pod's own identity"
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
    /// Generate a CA and a serving certificate at start (for trying it out and tests).
    #[arg(long)]
    pub self_signed: bool,
    /// Where --self-signed writes ca.crt, tls.crt, tls.key and ca-bundle.b64.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("secret-injector"))]
    pub self_signed_dir: PathBuf,
    /// Extra DNS names or IPs for the --self-signed certificate.
    #[arg(long = "self-signed-name")]
    pub self_signed_names: Vec<String>,
    /// Webhook configuration (YAML); every key can also be set as SECRET_INJECTOR_<KEY>.
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
    /// Time a client has to send its request headers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
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
}
