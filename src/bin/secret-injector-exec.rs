//! The env-mode wrapper as it is copied into each pod: `exec` alone, with no async
//! runtime, TLS, SDK or argument parser linked in, so the copy in the pod's memory
//! volume stays small (docs/performance.md). Same command line as
//! `secret-injector exec`: `[exec] [--env-file=PATH | --env-file PATH] -- CMD ARGS...`.

use std::process::ExitCode;

use secret_injector::contract::names::ENV_FILE;

/// The env file and the program, or a usage error.
fn parse(args: &[String]) -> Result<(String, &[String]), String> {
    let mut rest = args;
    if rest.first().map(String::as_str) == Some("exec") {
        rest = &rest[1..];
    }
    let mut env_file = ENV_FILE.to_string();
    loop {
        match rest.split_first() {
            Some((a, tail)) if a == "--" => return Ok((env_file, tail)),
            Some((a, tail)) if a == "--env-file" => match tail.split_first() {
                Some((path, tail)) => {
                    env_file = path.clone();
                    rest = tail;
                }
                None => return Err("--env-file needs a path".to_string()),
            },
            Some((a, tail)) if a.starts_with("--env-file=") => {
                env_file = a["--env-file=".len()..].to_string();
                rest = tail;
            }
            Some((a, _)) => {
                return Err(format!(
                    "unexpected `{}`: usage: exec [--env-file=PATH] -- CMD ARGS...",
                    secret_injector::logging::Escaped(a)
                ));
            }
            None => return Err("nothing to run: give the command after `--`".to_string()),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let err = match parse(&args) {
        Ok((env_file, argv)) => {
            secret_injector::agent::exec::exec(std::path::Path::new(&env_file), argv)
        }
        Err(usage) => usage,
    };
    // Only reached when the program could not be started: 127, as a shell does.
    eprintln!("secret-injector exec: {err}");
    ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_lines_of_secret_injector_exec_are_accepted() {
        let a = args(&["exec", "--env-file=/e.json", "--", "/app", "--flag"]);
        let (file, argv) = parse(&a).unwrap();
        assert_eq!((file.as_str(), argv), ("/e.json", &a[3..]));
        let a = args(&["--env-file", "/f.json", "--", "app"]);
        let (file, argv) = parse(&a).unwrap();
        assert_eq!((file.as_str(), argv), ("/f.json", &a[3..]));
        let a = args(&["--", "app", "--", "x"]);
        let (file, argv) = parse(&a).unwrap();
        assert_eq!((file.as_str(), argv), (ENV_FILE, &a[1..]));
    }

    #[test]
    fn usage_errors_say_what_is_missing() {
        assert!(parse(&args(&["exec"])).unwrap_err().contains("after `--`"));
        assert!(
            parse(&args(&["--env-file"]))
                .unwrap_err()
                .contains("needs a path")
        );
        assert!(
            parse(&args(&["app"]))
                .unwrap_err()
                .contains("unexpected `app`")
        );
    }
}
