//! The agent's entry points: `secret-injector-agent init|refresh|exec`, and the env-mode
//! wrapper `secret-injector-exec` ([`wrapper_main`]). The only place that turns errors
//! into exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use contract::args::{self, AgentCli, AgentCommand, InitArgs, RefreshArgs};
use contract::names;

/// A command that failed: what to print after the program's name, and the exit code.
struct Failure {
    /// `secret-injector init`, `secret-injector refresh`: the user's command.
    program: &'static str,
    code: u8,
    error: anyhow::Error,
}

/// `secret-injector-agent`.
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `exec` has the one parser the wrapper also uses, not clap's.
    if argv.first().map(String::as_str) == Some(args::EXEC) {
        return exec(&argv);
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = AgentCli::parse();
    runtime::logging::init(cli.log.format, None);
    let outcome = match cli.command {
        AgentCommand::Init(args) => init(args),
        AgentCommand::Refresh(args) => refresh(args),
    };
    runtime::logging::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}: {:#}", f.program, f.error);
            ExitCode::from(f.code)
        }
    }
}

/// `secret-injector-exec`, the wrapper copied into env-mode pods: `exec` alone, with no
/// async runtime, TLS, SDK or argument parser reached, so the copy stays small.
pub fn wrapper_main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    exec(&argv)
}

/// `exec` only returns when the program could not be started: 127, as a shell does.
fn exec(argv: &[String]) -> ExitCode {
    let err = match args::parse_exec(argv) {
        Ok((env_file, program)) => crate::exec::exec(std::path::Path::new(&env_file), program),
        Err(usage) => usage,
    };
    eprintln!("secret-injector exec: {err}");
    ExitCode::from(127)
}

/// `init`: every failure is one line, exit code 1 (the pod's init container restarts).
fn init(args: InitArgs) -> Result<(), Failure> {
    let program = "secret-injector init";
    let opts = options(args, program)?;
    let runtime = agent_runtime(program)?;
    let (namespace, pod) = pod();
    let span = tracing::info_span!("init", namespace = %namespace, pod = %pod);
    use tracing::Instrument;
    runtime
        .block_on(
            async {
                // Watched from the start: SIGTERM during the login or the fetch revokes
                // what was issued.
                let stop = crate::stop::terminated();
                crate::init::run(opts, stop).await
            }
            .instrument(span),
        )
        .map_err(|e| failure(program, e.into()))
}

/// `refresh`: the native sidecar. A failed first fetch exits 1 (the kubelet restarts
/// it, and the startup probe keeps the app waiting); SIGTERM exits 0.
fn refresh(args: RefreshArgs) -> Result<(), Failure> {
    let program = "secret-injector refresh";
    if let Some(problem) = args
        .reload_url
        .as_deref()
        .and_then(contract::reload::problem)
    {
        return Err(failure(
            program,
            anyhow!("{}: {problem}", names::RELOAD_URL_ENV),
        ));
    }
    let opts = crate::refresh::RefreshOptions {
        init: options(args.init, program)?,
        interval: args.interval,
        reload_url: args.reload_url,
        probe_listen: args.probe_listen,
        lease_grace: args.lease_grace,
    };
    let runtime = agent_runtime(program)?;
    let (namespace, pod) = pod();
    let span = tracing::info_span!("refresh", namespace = %namespace, pod = %pod);
    use tracing::Instrument;
    runtime
        .block_on(
            async move {
                // Watched from the start: SIGTERM during the login or the first fetch
                // revokes what was issued.
                let stop = crate::stop::terminated();
                let status = Arc::new(crate::refresh::Status::default());
                let listener = tokio::net::TcpListener::bind(opts.probe_listen)
                    .await
                    .with_context(|| format!("bind the probe listener {}", opts.probe_listen))?;
                tokio::spawn(crate::refresh::serve_probes(listener, status.clone()));
                crate::refresh::run(opts, status, stop).await?;
                Ok::<_, anyhow::Error>(())
            }
            .instrument(span),
        )
        .map_err(|e| failure(program, e))
}

/// init's options from its args and env ([`InitArgs::options`]).
fn options(args: InitArgs, program: &'static str) -> Result<crate::init::Options, Failure> {
    args.options(|path| std::fs::read_to_string(path))
        .map_err(|e| failure(program, anyhow!(e)))
}

fn failure(program: &'static str, error: anyhow::Error) -> Failure {
    Failure {
        program,
        code: 1,
        error,
    }
}

/// One thread: the agent waits on the network; its CPU work (TLS, JSON, templates) is
/// milliseconds. Fewer threads, fewer malloc arenas and stacks: a smaller pod.
fn agent_runtime(program: &'static str) -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(program, anyhow!("cannot start the async runtime: {e}")))
}

/// The pod's namespace and name (downward API), for the span around every line.
fn pod() -> (String, String) {
    let namespace = std::env::var(names::POD_NAMESPACE_ENV).unwrap_or_default();
    let pod = std::env::var(names::POD_NAME_ENV).unwrap_or_default();
    (namespace, pod)
}
