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
}
