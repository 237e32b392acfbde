//! `secret-injector`: the webhook (`serve`, `inject`, `certs`), crates/webhook.
fn main() -> std::process::ExitCode {
    webhook::main()
}
