//! The env file of env mode: `init` writes it, `exec` reads it, and the rules for its
//! variable names, which admission checks too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A POSIX-portable variable name: letters, digits and `_`, not starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prefixes of the dynamic loaders' variables (glibc/musl `ld.so`, macOS `dyld`).
pub const LOADER_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Variables that choose which program or which code a process loads: `PATH`, glibc's
/// "unsecure" variables (those it drops for setuid programs), and the code-loading
/// variables of common language runtimes and shells. Matched exactly (Linux names are
/// case-sensitive); every `LD_*` and `DYLD_*` name counts too ([`LOADER_PREFIXES`]).
pub const LOADER_VARIABLES: &[&str] = &[
    "PATH",
    // glibc's unsecure-envvars list, besides LD_*
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
    // language runtimes and shells
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "PS4",
    "IFS",
    "CLASSPATH",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_PROFILER_PATH",
    "CORECLR_PROFILER_PATH_32",
    "CORECLR_PROFILER_PATH_64",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "PYTHONWARNINGS",
    "PERL5DB",
    "GEM_PATH",
    "GEM_HOME",
];

/// A variable that changes which program or code the app runs. `env-from` loads one only
/// when the pod lists it in `secret-injector.io/env-from-allow`.
pub fn is_loader_variable(name: &str) -> bool {
    LOADER_VARIABLES.contains(&name) || LOADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The env file `init` writes and `exec` reads. Its `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    /// Name -> value.
    pub vars: BTreeMap<String, String>,
    /// The loader variables of `vars` that init let through (named by an
    /// `env-<VAR>` annotation, or listed in `env-from-allow`). `exec` refuses any other.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub loader_allowed: BTreeSet<String>,
}

// The values are secrets: never printed, even in a debug log or a panic.
impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("loader_allowed", &self.loader_allowed)
            .finish()
    }
}

/// The longest line the kubelet reads from an env file: Go's `bufio.Scanner` stops
/// at a line of 64 KiB with its newline.
pub const KUBELET_LINE_MAX: usize = 64 * 1024 - 1;

/// `vars` as the env file the kubelet reads for `env[].valueFrom.fileKeyRef`
/// (Kubernetes 1.35, EnvFiles beta: `pkg/kubelet/util/env`): one `NAME='value'` per
/// variable. Inside single quotes the kubelet keeps every byte literally, newlines
/// included, with three exceptions this refuses rather than alter a value: a single
/// quote (the format has no escape), a CR before a LF (the kubelet drops it), and a
/// line of [`KUBELET_LINE_MAX`] bytes or more. NUL is refused too (no environment can
/// hold it). Errors name the variable, never its value.
pub fn kubelet_env_file(vars: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let mut out = String::new();
    for (name, value) in vars {
        let problem = if value.contains('\'') {
            Some("contains a single quote, which the kubelet's env-file format cannot carry")
        } else if value.contains('\0') {
            Some("contains a NUL byte")
        } else if value.contains("\r\n") {
            Some("has CR LF line ends, and the kubelet would drop the CRs")
        } else {
            None
        };
        let start = out.len();
        out.push_str(name);
        out.push_str("='");
        out.push_str(value);
        out.push('\'');
        let long = out[start..]
            .split('\n')
            .any(|l| l.len() >= KUBELET_LINE_MAX);
        let problem = problem
            .or(long.then_some("has a line of 64 KiB or more, longer than the kubelet reads"));
        if let Some(problem) = problem {
            return Err(format!(
                "the value of `{}` {problem}; use env_delivery `exec` (the wrapper takes any value) or mount it as a file",
                crate::text::Escaped(name)
            ));
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let file = EnvFile {
            vars: [("DB_PASSWORD".to_string(), "pw-canary-4".to_string())].into(),
            loader_allowed: BTreeSet::new(),
        };
        let shown = format!("{file:?}");
        assert!(
            shown.contains("DB_PASSWORD") && !shown.contains("pw-canary-4"),
            "{shown}"
        );
    }

    /// The kubelet's parser for `fileKeyRef` (Kubernetes 1.35,
    /// pkg/kubelet/util/env/env_util.go `ParseEnv`), line for line: what it returns
    /// for `key`, or its error.
    fn kubelet_parse(file: &str, key: &str) -> Result<Option<String>, String> {
        // bufio.ScanLines: split at LF, drop one CR before it; 64 KiB lines at most.
        let mut lines = file.split_inclusive('\n').map(|l| {
            assert!(l.len() <= 64 * 1024, "bufio.Scanner: token too long");
            let l = l.strip_suffix('\n').unwrap_or(l);
            l.strip_suffix('\r').unwrap_or(l)
        });
        while let Some(line) = lines.next() {
            let line = line.trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let eq = line.find('=').ok_or("missing '='")?;
            let name_part = &line[..eq];
            let name = name_part.trim_end_matches([' ', '\t']);
            if name.is_empty() || name != name_part {
                return Err(format!("bad name `{name_part}`"));
            }
            let value_part = &line[eq + 1..];
            let trimmed = value_part.trim_start_matches([' ', '\t']);
            if trimmed != value_part {
                if name == key {
                    return Ok(Some(String::new()));
                }
                continue;
            }
            let mut rest = trimmed.strip_prefix('\'').ok_or("value must be quoted")?;
            let mut value = String::new();
            loop {
                if let Some(i) = rest.find('\'') {
                    value.push_str(&rest[..i]);
                    let after = rest[i + 1..].trim_start_matches([' ', '\t']);
                    if !after.is_empty() && !after.starts_with('#') {
                        return Err("content after the closing quote".to_string());
                    }
                    if name == key {
                        return Ok(Some(value));
                    }
                    break;
                }
                value.push_str(rest);
                value.push('\n');
                rest = lines.next().ok_or("unclosed single quote")?;
            }
        }
        Ok(None)
    }

    /// Every value the format can carry reaches the kubelet unchanged.
    #[test]
    fn kubelet_env_file_round_trips_through_the_kubelet_parser() {
        let values = [
            "p@ss#word = x",
            "",
            " leading and trailing \t",
            "line one\n\n# not a comment\n  indented\n",
            "back\\slash \"double\" $HOME `cmd` ${X}",
            "ünïcødé ✓",
            "a lone \r in the middle and at the end\r",
            "=starts with equals",
        ];
        let vars: BTreeMap<String, String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("VAR_{i}"), v.to_string()))
            .collect();
        let file = String::from_utf8(kubelet_env_file(&vars).unwrap()).unwrap();
        for (name, value) in &vars {
            assert_eq!(
                kubelet_parse(&file, name).unwrap().as_deref(),
                Some(value.as_str()),
                "{name}"
            );
        }
        assert_eq!(kubelet_parse(&file, "MISSING").unwrap(), None);
    }

    /// What the kubelet would change or cannot read is refused, naming the variable
    /// and not the value.
    #[test]
    fn kubelet_env_file_refuses_what_the_kubelet_would_alter() {
        let long = "x".repeat(KUBELET_LINE_MAX);
        let long_line_in_the_middle = format!("a\n{long}\nb");
        for (value, want) in [
            ("it's-secret-1", "single quote"),
            ("nul\0secret-2", "NUL"),
            ("crlf\r\nsecret-3", "CR LF"),
            (long.as_str(), "64 KiB"),
            (long_line_in_the_middle.as_str(), "64 KiB"),
        ] {
            let vars = [("DB_PASSWORD".to_string(), value.to_string())].into();
            let e = kubelet_env_file(&vars).unwrap_err();
            assert!(e.contains("`DB_PASSWORD`") && e.contains(want), "{e}");
            assert!(!e.contains("secret-"), "{e}");
        }
        // Just under the limit is fine, and read back whole.
        let fits = "y".repeat(KUBELET_LINE_MAX - "V=''".len() - 1);
        let vars = [("V".to_string(), fits.clone())].into();
        let file = String::from_utf8(kubelet_env_file(&vars).unwrap()).unwrap();
        assert_eq!(kubelet_parse(&file, "V").unwrap(), Some(fits));
    }
}
