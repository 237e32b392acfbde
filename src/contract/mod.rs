//! The contract between the webhook and the pod: what the webhook writes into the
//! injected containers and the pod reads back. Pure, and the only code both sides share
//! besides `config` and `logging`.
//!
//! - [`auth`]: the Vault auth method;
//! - [`cloud`]: how the pod reaches Google Secret Manager and Azure Key Vault;
//! - [`names`]: container, volume, path and env names;
//! - [`plan`]: the fetch plan the init container is given;
//! - [`envfile`]: env mode's file and the rules for its variable names;
//! - [`reference`]: secret references (`vault:…`, `aws:…`, `ssm:…`, `gcp:…`, `azure:…`),
//!   parsed on both sides;
//! - [`reload`]: the reload URL the refresh sidecar calls;
//! - [`render`]: templates, checked by the webhook, rendered in the pod.

pub mod auth;
pub mod cloud;
pub mod envfile;
pub mod names;
pub mod plan;
pub mod reference;
pub mod reload;
pub mod render;
