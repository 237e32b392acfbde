//! `secret-injector exec -- CMD ARGS...`: the env-mode wrapper. Loads the variables the
//! init container wrote, then `execve`s the original program: same PID, signals go
//! straight to the app, its exit code is the container's.
//!
//! The program is resolved with the container's own `PATH` before any variable is
//! applied, and the env file may set a loader variable ([`is_loader_variable`]) only
//! when it lists it as allowed: whoever writes a secret must not choose what code the
//! app runs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use contract::envfile::{EnvFile, is_loader_variable, valid_env_name};

/// Read and check the env file. Errors name the variable, never its value.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// [`load`] of the bytes of the file `shown`. Pure (and fuzzed: `fuzz/`).
pub fn parse(bytes: &[u8], shown: &str) -> Result<BTreeMap<String, String>, String> {
    let file: EnvFile = serde_json::from_slice(bytes).map_err(|_| {
        format!(
            "{shown} is not an env file of secret-injector init (a JSON object with `vars`, an object of strings)"
        )
    })?;
    for (name, value) in &file.vars {
        let name_shown = contract::text::Escaped(name);
        if !valid_env_name(name) {
            return Err(format!(
                "{shown}: `{name_shown}` is not a valid variable name"
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "{shown}: the value of `{name_shown}` contains a NUL byte"
            ));
        }
        if is_loader_variable(name) && !file.loader_allowed.contains(name) {
            return Err(format!(
                "{shown}: sets `{name}`, a loader variable (it changes which code the app runs) that init did not allow; name it with secret-injector.io/env-{name}, or add it to secret-injector.io/env-from-allow"
            ));
        }
    }
    Ok(file.vars)
}

/// The program `exec` runs: as given when it contains a `/`, else the first executable
/// regular file named `program` in the directories of `path` (the container's own
/// `PATH`, never the injected one; unset: `/bin:/usr/bin`, as glibc's `execvp`; an
/// empty entry is the current directory, as in `execvp`).
pub fn resolve(program: &str, path: Option<&OsStr>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() {
        return Err("the command is an empty string".to_string());
    }
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return Ok(candidate);
        }
    }
    Err(format!(
        "cannot run {program}: not found in the container's PATH ({})",
        path.to_string_lossy()
    ))
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
    // Resolved before the variables apply: an injected PATH cannot pick the binary.
    let resolved = match resolve(program, std::env::var_os("PATH").as_deref()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let err = std::process::Command::new(&resolved)
        .arg0(program)
        .args(args)
        .envs(vars)
        .exec();
    format!("cannot run {program}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn env_file(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("env.json");
        std::fs::write(&p, json).unwrap();
        p
    }

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
        let p = env_file(
            dir.path(),
            r#"{"vars":{"GOOD":"v","BAD=NAME":"hidden-value"}}"#,
        );
        let e = load(&p).unwrap_err();
        assert!(e.contains("BAD=NAME") && !e.contains("hidden-value"), "{e}");
        let p = env_file(dir.path(), "{\"vars\":{\"A\":\"x\\u0000y\"}}");
        assert!(load(&p).unwrap_err().contains("NUL"));
        // the old flat format, or anything else, is refused without quoting it
        let p = env_file(dir.path(), r#"{"A":"hidden-value"}"#);
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("not an env file") && !e.contains("hidden-value"),
            "{e}"
        );
    }

    #[test]
    fn loader_variables() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "GLIBC_TUNABLES",
            "GCONV_PATH",
            "TMPDIR",
            "NODE_OPTIONS",
            "PYTHONPATH",
            "PERL5OPT",
            "RUBYOPT",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "BASH_ENV",
            "ENV",
            "IFS",
        ] {
            assert!(is_loader_variable(name), "{name}");
        }
        for name in [
            "DB_PASSWORD",
            "Path",
            "ld_preload",
            "OLD_PATH",
            "PATH_PREFIX",
            "ENVIRONMENT",
            "NODE_ENV",
            "LD",
        ] {
            assert!(!is_loader_variable(name), "{name}");
        }
    }

    #[test]
    fn exec_refuses_loader_variables_the_file_does_not_allow() {
        let dir = tempfile::tempdir().unwrap();
        let p = env_file(
            dir.path(),
            r#"{"vars":{"A":"1","LD_PRELOAD":"/tmp/evil-value.so"}}"#,
        );
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("`LD_PRELOAD`") && e.contains("env-from-allow") && !e.contains("evil-value"),
            "{e}"
        );
        // listed as allowed: loaded
        let p = env_file(
            dir.path(),
            r#"{"vars":{"A":"1","LD_PRELOAD":"/x.so"},"loader_allowed":["LD_PRELOAD"]}"#,
        );
        assert_eq!(load(&p).unwrap()["LD_PRELOAD"], "/x.so");
        // and what init writes reads back
        let f = EnvFile {
            vars: BTreeMap::from([("PATH".to_string(), "/opt".to_string())]),
            loader_allowed: BTreeSet::from(["PATH".to_string()]),
        };
        let p = env_file(dir.path(), &serde_json::to_string(&f).unwrap());
        assert_eq!(load(&p).unwrap(), f.vars);
    }

    #[test]
    fn the_program_is_resolved_with_the_containers_own_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mk = |sub: &str, exec: bool| {
            let d = dir.path().join(sub);
            std::fs::create_dir_all(&d).unwrap();
            let f = d.join("app");
            std::fs::write(&f, "#!/bin/sh\n").unwrap();
            let mode = if exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            d
        };
        let noexec = mk("noexec", false);
        let real = mk("real", true);
        let own = std::env::join_paths([&noexec, &real]).unwrap();
        assert_eq!(resolve("app", Some(&own)).unwrap(), real.join("app"));
        assert_eq!(
            resolve("./app", Some(&own)).unwrap(),
            PathBuf::from("./app"),
            "a path is used as given"
        );
        let e = resolve("app", Some(dir.path().join("none").as_os_str())).unwrap_err();
        assert!(e.contains("not found in the container's PATH"), "{e}");
        assert!(resolve("", Some(&own)).is_err());
        assert!(resolve("sh", None).unwrap().ends_with("sh"));
    }
}
