//! The in-pod agent: `init` logs in with the pod's own identity, fetches from the
//! stores ([`providers`]), renders and writes the files; `exec` starts the app with the
//! fetched variables.

pub mod assemble;
pub mod exec;
pub mod fetch;
pub mod init;
pub mod leases;
pub mod probes;
pub mod providers;
pub mod refresh;
pub mod stop;
