//! Names and paths the webhook writes into the injected containers and the pod reads
//! back: defined once, here.

pub const INIT_CONTAINER: &str = "secret-injector-init";
pub const FILES_VOLUME: &str = "secret-injector-files";
pub const ENV_VOLUME: &str = "secret-injector-env";

/// Paths inside the injected containers.
pub const INIT_FILES_DIR: &str = "/secret-injector/files";
pub const INIT_ENV_DIR: &str = "/secret-injector/env";
pub const TOKEN_DIR: &str = "/var/run/secrets/secret-injector";
/// The env-mode wrapper as the app container sees it.
pub const EXEC_BINARY: &str = "/secret-injector/bin/secret-injector";
pub const ENV_FILE: &str = "/secret-injector/env.json";
/// The env file's name inside the env-mode volume.
pub const ENV_FILE_NAME: &str = "env.json";

/// Env var carrying the [`super::plan::FetchPlan`] as JSON.
pub const PLAN_ENV: &str = "SECRET_INJECTOR_PLAN";

/// Where the env-mode volume (binary and env file) is mounted in app containers.
pub const ENV_MOUNT_PATH: &str = "/secret-injector";

/// The init container's env: the patch writes these, `init`'s command line reads them.
pub const POD_NAMESPACE_ENV: &str = "SECRET_INJECTOR_POD_NAMESPACE";
pub const POD_NAME_ENV: &str = "SECRET_INJECTOR_POD_NAME";
pub const VAULT_ADDR_ENV: &str = "VAULT_ADDR";
pub const VAULT_ROLE_ENV: &str = "SECRET_INJECTOR_VAULT_ROLE";
pub const VAULT_AUTH_PATH_ENV: &str = "SECRET_INJECTOR_VAULT_AUTH_PATH";
pub const VAULT_AUTH_METHOD_ENV: &str = "SECRET_INJECTOR_VAULT_AUTH_METHOD";
pub const VAULT_TOKEN_FILE_ENV: &str = "SECRET_INJECTOR_VAULT_TOKEN_FILE";
pub const VAULT_CA_PEM_ENV: &str = "SECRET_INJECTOR_VAULT_CA_PEM";
pub const VAULT_NAMESPACE_ENV: &str = "VAULT_NAMESPACE";
/// The Vault token's path in the init container: `{TOKEN_DIR}/vault/token`.
pub const VAULT_TOKEN_FILE: &str = "/var/run/secrets/secret-injector/vault/token";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_agree() {
        assert_eq!(VAULT_TOKEN_FILE, format!("{TOKEN_DIR}/vault/token"));
        assert_eq!(ENV_FILE, format!("{ENV_MOUNT_PATH}/{ENV_FILE_NAME}"));
        assert_eq!(EXEC_BINARY, format!("{ENV_MOUNT_PATH}/bin/secret-injector"));
    }
}
