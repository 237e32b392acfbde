//! The contract between the webhook and the pod: what the webhook writes into the
//! injected containers and the agent in the pod reads back. Pure (no I/O), and the only
//! code the two roles share besides the edges in `secret-injector-runtime`.
//!
//! - [`args`]: the agent's command line: the arguments the patch writes, their parser
//!   and their decoding;
//! - [`auth`]: the Vault auth method;
//! - [`cloud`]: how the pod reaches Google Secret Manager and Azure Key Vault;
//! - [`names`]: container, volume, path and env names;
//! - [`plan`]: the fetch plan the init container is given;
//! - [`envfile`]: env mode's file and the rules for its variable names;
//! - [`reference`]: secret references (`vault:…`, `aws:…`, `ssm:…`, `gcp:…`, `azure:…`),
//!   parsed on both sides;
//! - [`reload`]: the reload URL the refresh sidecar calls;
//! - [`render`]: templates, checked by the webhook, rendered in the pod;
//! - [`text`]: request values and error chains made fit for a log line or a message.

pub mod args;
pub mod auth;
pub mod cloud;
pub mod envfile;
pub mod names;
pub mod plan;
pub mod reference;
pub mod reload;
pub mod render;
pub mod text;
