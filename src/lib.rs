//! secret-injector: a Kubernetes mutating admission webhook that injects secrets from
//! Vault/OpenBao and AWS Secrets Manager into pods, fetched inside the pod with the pod's
//! own identity, written to an in-memory volume. Values never pass the API server.
//!
//! One binary, two programs, and what they share:
//! - [`webhook`]: runs in the webhook Deployment (`serve`, and `inject -f` offline): the
//!   HTTPS edges around the pure [`mutation`];
//! - [`mutation`]: pure, no I/O: AdmissionReview's pod -> [`mutation::spec`] -> JSON
//!   [`mutation::patch`];
//! - [`agent`]: runs in the pod (`init`, `exec`): log in, fetch, render, write;
//! - [`contract`]: pure, what the webhook writes and the pod reads (references,
//!   templates), the only code both programs use besides [`config`] and [`logging`].

pub mod agent;
pub mod cli;
pub mod config;
pub mod contract;
pub mod files;
pub mod logging;
pub mod mutation;
pub mod webhook;

use config::Config;
use mutation::patch;
use mutation::pod::PodView;
use mutation::spec::{self, Context, Decision, Problems};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Tls(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] files::WriteError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// What the webhook does with one pod.
#[derive(Debug)]
pub enum Outcome {
    Skipped(&'static str),
    Injected {
        patch: json_patch::Patch,
        warnings: Vec<String>,
    },
    Denied(Problems),
}

/// The whole pure mutation: annotations -> spec -> patch.
pub fn mutate(pod: &PodView, config: &Config, ctx: &Context) -> Outcome {
    match spec::parse(pod, config, ctx) {
        Ok(Decision::Skip(reason)) => Outcome::Skipped(reason),
        Ok(Decision::Inject(spec)) => {
            let mut warnings = spec.warnings.clone();
            warnings.extend(patch::aws_identity_warning(pod, &spec));
            Outcome::Injected {
                patch: patch::build(pod, &spec, config),
                warnings,
            }
        }
        Err(problems) => Outcome::Denied(problems),
    }
}
