//! `secret-injector-agent`: what the injected containers run (`init`, `refresh`,
//! `exec`), crates/agent.
fn main() -> std::process::ExitCode {
    agent::main()
}
