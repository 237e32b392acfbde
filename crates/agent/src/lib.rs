//! secret-injector's agent: the binary `secret-injector-agent`, which the injected
//! containers run, and the env-mode wrapper `secret-injector-exec`. `init` logs in with
//! the pod's own identity, fetches from the stores ([`providers`]), renders and writes
//! the files; `refresh` does it again until SIGTERM; `exec` starts the app with the
//! fetched variables. It reads what the webhook wrote (`secret-injector-contract`) and
//! never depends on the webhook.

pub mod assemble;
pub mod exec;
pub mod fetch;
pub mod init;
pub mod leases;
pub mod probes;
pub mod providers;
pub mod refresh;
pub mod run;
pub mod stop;

pub use run::{main, wrapper_main};
