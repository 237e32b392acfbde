//! Dispatch of the commands; the only place that turns errors into exit codes.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{CertsArgs, Cli, Command, InjectArgs, ServeArgs};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{self, AppState, Limits};
use crate::tls::CertFiles;
use crate::{accounts, certs, cluster};
use anyhow::{Context as _, Result, anyhow};
use runtime::files::{FileOut, write_all_or_nothing};

/// A command that failed: what to print after the program's name, and the exit code.
pub struct Failure {
    /// `secret-injector`.
    program: &'static str,
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    /// Setup and usage errors of `serve`, `inject` and `certs`: exit code 2.
    fn from(error: anyhow::Error) -> Self {
        Failure {
            program: "secret-injector",
            code: 2,
            error,
        }
    }
}

impl From<runtime::Error> for Failure {
    fn from(e: runtime::Error) -> Self {
        anyhow::Error::from(e).into()
    }
}

type Outcome = std::result::Result<ExitCode, Failure>;

/// Run one command; the only place that prints a failure and picks its exit code.
pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Inject(args) => inject(args),
        Command::Certs(args) => make_certs(args),
    };
    runtime::logging::flush();
    outcome.unwrap_or_else(|f| {
        eprintln!("{}: {:#}", f.program, f.error);
        ExitCode::from(f.code)
    })
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

fn serve(args: ServeArgs) -> Outcome {
    let config = load_config(args.config.as_deref())?;
    // Read again only to tell whether it names `image` (Config::load has checked it).
    let file_yaml = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?,
        None => String::new(),
    };
    let image_configured = cluster::image_is_configured(
        &file_yaml,
        std::env::var(cluster::IMAGE_ENV).ok().as_deref(),
    );
    let given = match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(cert), Some(key), _) => Some(CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            clients: None,
        }),
        (None, None, true) => None,
        _ => return Err(anyhow!("give --tls-cert and --tls-key, or --self-signed").into()),
    };
    // Bind first: a port in use must fail the start before anything is written to disk.
    let webhook = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("bind the webhook listener {}", args.listen))?;
    let admin = std::net::TcpListener::bind(args.admin_listen)
        .with_context(|| format!("bind the admin listener {}", args.admin_listen))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    // Then the Kubernetes API: a required one that is missing refuses the start, also
    // before anything is written.
    let in_cluster = cluster::in_cluster(std::env::var(cluster::SERVICE_HOST_ENV).ok().as_deref());
    let need = cluster::need(args.kube, in_cluster);
    let client = runtime
        .block_on(cluster::client(need, args.kube, in_cluster))
        .map_err(|e| anyhow!(e))?;
    let mut files = match given {
        Some(files) => files,
        None => write_self_signed(&args)?,
    };
    if let Some(ca) = &args.client_ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("read --client-ca {}", ca.display()))?;
        files.clients = Some(
            crate::tls::client_verifier(&pem, &args.client_names)
                .with_context(|| format!("--client-ca {}", ca.display()))?,
        );
    }
    let (tls, loaded) = files.load()?;
    let mut metrics = Metrics::new();
    if client.is_some() {
        metrics.export_cache_synced();
    }
    let metrics = Arc::new(metrics);
    let mut state = AppState::new(config, metrics.clone());
    if let Some(n) = args.review_threads {
        state.reviews = Arc::new(tokio::sync::Semaphore::new(usize::from(n)));
    }
    let limits = Limits {
        body_limit: args.body_limit,
        request_timeout: args.request_timeout,
        header_timeout: args.header_timeout,
        shutdown_grace: args.shutdown_grace,
        shutdown_delay: args.shutdown_delay,
        idle_timeout: args.idle_timeout,
    };
    runtime.block_on(async move {
        if let Some(client) = &client {
            watch_accounts(client, need, &mut state, &metrics);
        }
        let image = injected_image(&client, in_cluster, image_configured, &state.config.image, &metrics).await?;
        state.config.image = image;
        tokio::spawn(files.watch(tls.clone(), loaded, args.tls_reload_interval, metrics));
        tracing::info!(listen = %args.listen, admin = %args.admin_listen, "serving admission reviews on /mutate");
        server::run(webhook, admin, tls, Arc::new(state), limits, runtime::signal::terminated()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The ServiceAccount cache: its watch, readiness (with `--kube required`, not ready
/// until it has synced, however long), its metric, and the lookups admission makes.
/// Call it inside the runtime.
fn watch_accounts(
    client: &kube::Client,
    need: cluster::Need,
    state: &mut AppState,
    metrics: &Arc<Metrics>,
) {
    let (accounts, watch) = accounts::watch(client.clone());
    tokio::spawn(watch);
    state.cache_synced = accounts.synced_flag();
    state.cache_error = accounts.last_error();
    if need == cluster::Need::Required {
        // Not ready until synced: no 30 s fallback to pod annotations.
        state.cache_wait = None;
    }
    tokio::spawn({
        let (accounts, metrics) = (accounts.clone(), metrics.clone());
        async move {
            accounts.wait_synced().await;
            metrics.cache_synced.set(1);
        }
    });
    let known = accounts.clone();
    state.known_namespace = Arc::new(move |ns: &str| known.namespace_known(ns));
    state.lookup = Arc::new(move |ns: &str, sa: &str| accounts.context(ns, sa));
    tracing::info!(
        required = need == cluster::Need::Required,
        "watching ServiceAccounts for eks.amazonaws.com/role-arn and azure.workload.identity/client-id"
    );
}

/// The image of the injected containers: the configured one, else the webhook's own,
/// read from its pod (in a cluster, with the API; a failure refuses the start), else
/// the built-in default. A configured image is checked against the own one in the
/// background: a mismatch warns and sets `secret_injector_injected_image_mismatch`.
async fn injected_image(
    client: &Option<kube::Client>,
    in_cluster: bool,
    configured: bool,
    config_image: &str,
    metrics: &Arc<Metrics>,
) -> Result<String> {
    let builtin = Config::default().image;
    let own_pod = match client {
        Some(client) if in_cluster => {
            cluster::SelfPod::from_env(|n| std::env::var(n).ok(), client.default_namespace())
                .map(|pod| (client.clone(), pod))
        }
        _ => None,
    };
    let configured = configured.then_some(config_image);
    let choice = match (configured, own_pod) {
        (None, Some((client, pod))) => {
            let own = cluster::own_image(client, &pod, cluster::OWN_IMAGE_DEADLINE)
                .await
                .map_err(|e| {
                    anyhow!(
                        "{e}. The injected containers run the webhook's own image: grant `get` on pods in namespace {} (manifests/base/rbac.yaml), or set `image` in the config ({})",
                        pod.namespace,
                        cluster::IMAGE_ENV
                    )
                })?;
            let choice = cluster::choose_image(None, &builtin, Some(&own));
            metrics.set_injected_image(choice.labels(), choice.mismatch());
            choice
        }
        (Some(image), Some((client, pod))) => {
            let choice = cluster::choose_image(Some(image), &builtin, None);
            // Set before the check below, which replaces it with the own image known:
            // never after it.
            metrics.set_injected_image(choice.labels(), choice.mismatch());
            let metrics = metrics.clone();
            let image = image.to_string();
            tokio::spawn(async move {
                match cluster::own_image(client, &pod, std::time::Duration::from_secs(300)).await {
                    Ok(own) => {
                        let choice = cluster::choose_image(Some(&image), &builtin, Some(&own));
                        if let Some(warning) = choice.mismatch_warning() {
                            tracing::warn!(image = %choice.image, own = %own, "{warning}");
                        }
                        metrics.set_injected_image(choice.labels(), choice.mismatch());
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot check the configured image of the injected containers against this webhook's own"
                    ),
                }
            });
            choice
        }
        (configured, None) => {
            let choice = cluster::choose_image(configured, &builtin, None);
            if in_cluster && choice.source == cluster::ImageSource::Default {
                tracing::warn!(
                    image = %choice.image,
                    "injecting the built-in default image: this webhook's own image is unknown here (no Kubernetes API, or no SECRET_INJECTOR_POD_NAME); set `image` in the config"
                );
            }
            metrics.set_injected_image(choice.labels(), choice.mismatch());
            choice
        }
    };
    tracing::info!(image = %choice.image, source = choice.source.as_str(), "image of the injected containers");
    Ok(choice.image)
}

/// `serve --self-signed`: a fresh CA and serving certificate in a private directory
/// (`certs::private_dir`), written without following anything planted there.
fn write_self_signed(args: &ServeArgs) -> Result<CertFiles> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(certs::service_names(
        "secret-injector",
        "secret-injector-system",
    ));
    names.extend(args.self_signed_names.iter().cloned());
    let bundle = certs::generate(&names, None, 30)?;
    let dir = &args.self_signed_dir;
    certs::private_dir(dir)?;
    // Held until the process ends: another server on this directory is refused.
    std::mem::forget(certs::lock_dir(dir)?);
    certs::write(&bundle, dir)?;
    let ca = dir.join("ca.crt");
    eprintln!(
        "secret-injector: self-signed certificate for {}; CA written to {} (curl --cacert {} https://localhost:{}/mutate)",
        names.join(", "),
        ca.display(),
        ca.display(),
        args.listen.port()
    );
    Ok(CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        clients: None,
    })
}

/// `inject -f`: the patched manifests on stdout; a denied pod prints its problems and
/// exits 1 (a verdict, like `diff`), a setup error exits 2.
fn inject(args: InjectArgs) -> Outcome {
    let config = load_config(args.config.as_deref())?;
    let mut input = String::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("read stdin")?;
    } else {
        input = std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?;
    }
    // A syntax error names the file it is in.
    if let Err(e) = crate::inject::parse_documents(&input) {
        let source = match args.file.as_os_str().to_str() {
            Some("-") => "stdin".to_string(),
            _ => args.file.display().to_string(),
        };
        eprintln!("{source}: {e}");
        return Ok(ExitCode::from(1));
    }
    match crate::inject::inject(&input, &config) {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            let mut out = std::io::stdout().lock();
            // A closed pipe (`inject -f … | head`) is the reader's choice: exit 2, quietly.
            match out
                .write_all(report.yaml.as_bytes())
                .and_then(|_| out.flush())
            {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(_) => Ok(ExitCode::from(2)),
            }
        }
        Err(denied) => {
            for w in &denied.warnings {
                eprintln!("warning: {w}");
            }
            for p in denied.problems {
                eprintln!("{p}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn make_certs(args: CertsArgs) -> Outcome {
    let mut names = certs::service_names(&args.service, &args.namespace);
    names.extend(args.names.iter().cloned());
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read_to_string(c).with_context(|| format!("read {}", c.display()))?,
            std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?,
        )),
        _ => None,
    };
    let bundle = certs::generate(
        &names,
        ca.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        args.days,
    )?;
    let mut written = certs::write(&bundle, &args.out_dir)?;
    if let Some(name) = &args.client {
        let (cert, key) = certs::client_cert(&bundle, name, args.days)?;
        let files = [
            FileOut::new("client.crt", cert, 0o644),
            FileOut::new("client.key", key, 0o600),
        ];
        write_all_or_nothing(&args.out_dir, &files)?;
        written.extend(files.iter().map(|f| args.out_dir.join(&f.name)));
    }
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    println!("{}", bundle.ca_bundle_b64());
    Ok(ExitCode::SUCCESS)
}

/// `secret-injector`: parse the command line, set up logging, run one command.
pub fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = <Cli as clap::Parser>::parse();
    // `serve` writes its per-review lines in batches.
    let batched = matches!(cli.command, Command::Serve(_)).then_some(server::REVIEW_LOG_TARGET);
    runtime::logging::init(cli.log.format, batched);
    run(cli)
}
