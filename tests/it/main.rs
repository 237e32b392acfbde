//! One integration-test binary: the webhook over HTTPS exactly as the API server calls
//! it, the CLI, and the in-pod fetch against real OpenBao and moto.

mod admission_https;
mod cli;
mod client_auth;
mod contract;
mod exec;
mod fetch;
mod hostile;
mod self_signed;
#[path = "../support/mod.rs"]
mod support;
mod util;
