//! One integration-test binary: the webhook over HTTPS exactly as the API server calls
//! it, and the CLI.

mod admission_https;
mod cli;
mod util;
