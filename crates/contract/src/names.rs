//! Names and paths the webhook writes into the injected containers and the pod reads
//! back: defined once, here.

use super::reference::Provider;

pub const INIT_CONTAINER: &str = "secret-injector-init";
/// The native sidecar of pods with a refresh interval (it replaces the init container).
pub const REFRESH_CONTAINER: &str = "secret-injector-refresh";
/// The sidecar's refresh interval (humantime, `5m`).
pub const REFRESH_INTERVAL_ENV: &str = "SECRET_INJECTOR_REFRESH_INTERVAL";
/// The URL the sidecar POSTs to after the files changed (`reload-url`).
pub const RELOAD_URL_ENV: &str = "SECRET_INJECTOR_RELOAD_URL";
/// The sidecar's probe port: `/readyz` (startup), `/healthz` (liveness), `/metrics`.
pub const PROBE_PORT: u16 = 8099;
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
/// With `env_delivery: file-key-ref`: the env file the kubelet reads (`fileKeyRef.path`
/// in the env volume), in its `KEY='value'` format.
pub const KUBELET_ENV_FILE_NAME: &str = "vars.env";

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
/// The Vault token's path in the init container: [`token_path`] of Vault.
pub const VAULT_TOKEN_FILE: &str = "/var/run/secrets/secret-injector/vault/token";

/// The log filter of the injected containers.
pub const LOG_ENV: &str = "RUST_LOG";

/// The AWS SDK's env, which the patch writes and the SDK (or `init`) reads in the pod.
pub const AWS_REGION_ENV: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION_ENV: &str = "AWS_DEFAULT_REGION";
pub const AWS_ENDPOINT_URL_ENV: &str = "AWS_ENDPOINT_URL";
pub const AWS_ENDPOINT_URL_SECRETS_MANAGER_ENV: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
pub const AWS_ENDPOINT_URL_SSM_ENV: &str = "AWS_ENDPOINT_URL_SSM";
pub const AWS_ROLE_ARN_ENV: &str = "AWS_ROLE_ARN";
pub const AWS_WEB_IDENTITY_TOKEN_FILE_ENV: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
pub const AWS_ROLE_SESSION_NAME_ENV: &str = "AWS_ROLE_SESSION_NAME";
pub const AWS_STS_REGIONAL_ENDPOINTS_ENV: &str = "AWS_STS_REGIONAL_ENDPOINTS";
/// EKS Pod Identity.
pub const AWS_CONTAINER_CREDENTIALS_FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_ENV: &str =
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// The projected token volume of a provider (`secret-injector-token-vault`).
pub fn token_volume(provider: Provider) -> String {
    format!("secret-injector-token-{provider}")
}

/// Where the injected containers mount a provider's token volume.
pub fn token_dir(provider: Provider) -> String {
    format!("{TOKEN_DIR}/{provider}")
}

/// The file name of the token inside its volume.
pub const TOKEN_FILE_NAME: &str = "token";

/// Where the injected containers read a provider's projected token.
pub fn token_path(provider: Provider) -> String {
    format!("{}/{TOKEN_FILE_NAME}", token_dir(provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_agree() {
        assert_eq!(VAULT_TOKEN_FILE, token_path(Provider::Vault));
        assert_eq!(ENV_FILE, format!("{ENV_MOUNT_PATH}/{ENV_FILE_NAME}"));
        assert_eq!(EXEC_BINARY, format!("{ENV_MOUNT_PATH}/bin/secret-injector"));
    }
}
