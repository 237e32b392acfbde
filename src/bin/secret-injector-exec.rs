//! `secret-injector-exec`: the env-mode wrapper as it is copied into each pod, `exec`
//! alone (crates/agent/src/run.rs). Same command line as `secret-injector-agent exec`:
//! `[exec] [--env-file=PATH | --env-file PATH] -- CMD ARGS...`.
fn main() -> std::process::ExitCode {
    agent::wrapper_main()
}
