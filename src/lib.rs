//! secret-injector: a Kubernetes mutating admission webhook that injects secrets from
//! Vault/OpenBao, AWS Secrets Manager and Parameter Store, Google Secret Manager and
//! Azure Key Vault into pods, fetched inside the pod with the pod's own identity,
//! written to an in-memory volume. Values never pass the API server.
//!
//! One binary, two programs, and what they share:
//! - [`webhook`]: runs in the webhook Deployment (`serve`, and `inject -f` offline): the
//!   HTTPS edges around the pure [`mutation`];
//! - [`mutation`]: pure, no I/O: AdmissionReview's pod -> [`mutation::spec`] -> JSON
//!   [`mutation::patch`];
//! - [`agent`]: runs in the pod (`init`, `exec`): log in, fetch, assemble, write;
//! - [`contract`]: pure, what the webhook writes and the pod reads (names, the plan,
//!   references, templates);
//! - shared by both: [`cli`] (the command line), [`files`] (the one atomic writer),
//!   [`logging`], and [`Error`]; [`config`] is the webhook's config file.

pub mod agent;
pub mod cli;
pub mod config;
pub mod contract;
pub mod files;
pub mod listen;
pub mod logging;
pub mod mutation;
pub mod webhook;

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub use mutation::{Outcome, mutate};
