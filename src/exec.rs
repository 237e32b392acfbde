//! `secret-injector exec -- CMD ARGS...`: the env-mode wrapper. Loads the variables the
//! init container wrote, then `execve`s the original program: same PID, signals go
//! straight to the app, its exit code is the container's.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// A POSIX-portable variable name: letters, digits and `_`, not starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Read and check the env file. Errors name the variable, never its value.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let vars: BTreeMap<String, String> = serde_json::from_slice(&bytes)
        .map_err(|_| format!("{} is not a JSON object of strings", path.display()))?;
    for (name, value) in &vars {
        if !valid_env_name(name) {
            return Err(format!(
                "{}: `{name}` is not a valid variable name",
                path.display()
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "{}: the value of `{name}` contains a NUL byte",
                path.display()
            ));
        }
    }
    Ok(vars)
}

/// Replace this process with `argv`, with the variables added to the environment.
/// Returns only on failure.
pub fn exec(env_file: &Path, argv: &[String]) -> String {
    let Some((program, args)) = argv.split_first() else {
        return "nothing to run: give the command after `--`".to_string();
    };
    let vars = match load(env_file) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let err = std::process::Command::new(program)
        .args(args)
        .envs(vars)
        .exec();
    format!("cannot run {program}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert!(valid_env_name("DB_PASSWORD") && valid_env_name("_x1"));
        assert!(
            !valid_env_name("1X")
                && !valid_env_name("A-B")
                && !valid_env_name("")
                && !valid_env_name("A=B")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env.json");
        std::fs::write(&p, r#"{"GOOD":"v","BAD=NAME":"hidden-value"}"#).unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.contains("BAD=NAME") && !e.contains("hidden-value"), "{e}");
        std::fs::write(&p, "{\"A\":\"x\\u0000y\"}").unwrap();
        assert!(load(&p).unwrap_err().contains("NUL"));
    }
}
