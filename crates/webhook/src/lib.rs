//! secret-injector's webhook: the binary `secret-injector` (`serve`, `inject`,
//! `certs`). The HTTPS edges around the pure [`mutation`]: AdmissionReview's pod ->
//! [`mutation::spec`] -> JSON [`mutation::patch`]. It writes the contract
//! (`secret-injector-contract`) into the pods it patches and never depends on the
//! agent that reads it.
//!
//! - [`cli`], [`run`]: the command line and the dispatch of its commands;
//! - [`config`]: the config file and its `SECRET_INJECTOR_*` env;
//! - [`mutation`]: pure, no I/O;
//! - [`server`], [`https`], [`admission`], [`body`], [`tls`], [`metrics`]: `serve`;
//! - [`cluster`], [`accounts`]: the Kubernetes API (the webhook's own image, the
//!   ServiceAccount cache);
//! - [`inject`]: `inject -f`; [`certs`]: `certs` and `--self-signed`.

pub mod accounts;
pub mod admission;
pub mod body;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod https;
pub mod inject;
pub mod metrics;
pub mod mutation;
pub mod run;
pub mod server;
pub mod tls;

pub use mutation::{Outcome, mutate};
pub use run::main;
