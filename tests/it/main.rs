//! One integration-test binary: the webhook over HTTPS exactly as the API server calls
//! it, the CLI, and the injected init container run against real OpenBao, moto and
//! PostgreSQL (`file_mode`, `vault`, `aws`, `env_mode`, `dynamic_credentials`,
//! `retries`, all arranged with `fixtures`).

mod admission_https;
mod aws;
mod cli;
mod client_auth;
mod clouds;
mod connections;
mod contract;
mod documented_messages;
mod dynamic_credentials;
mod env_mode;
mod examples;
mod exec;
mod file_mode;
mod fixtures;
mod hostile;
mod in_cluster;
mod leftovers;
mod listeners;
mod manifests;
mod rbac;
mod refresh;
mod refresh_faults;
mod retries;
mod self_signed;
mod ssm;
mod store_answers;
#[path = "../support/mod.rs"]
mod support;
mod util;
mod vault;
mod vault_audiences;
