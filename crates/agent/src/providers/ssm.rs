//! AWS Systems Manager Parameter Store, with the same identity, region and retries as
//! Secrets Manager ([`Aws`]). SecureStrings are decrypted; several current parameters
//! of a pod are read with `GetParameters` (10 per call); `ssm:/path/` reads every
//! parameter under the path with `GetParametersByPath`.

use serde_json::{Map, Value};

use super::aws::{Aws, classify};
use super::{AgentError, Fetched};
use contract::reference::{SecretRef, SsmName, Version};

/// Most names `GetParameters` accepts in one call.
pub const BATCH_LIMIT: usize = 10;

const SERVICE: &str = "Parameter Store";

/// The name to ask for: the parameter with its `:version` or `:label` selector.
fn selected_name(name: &str, version: Option<&Version>) -> String {
    match version {
        Some(Version::Number(n)) => format!("{name}:{n}"),
        Some(Version::Label(l)) => format!("{name}:{l}"),
        _ => name.to_string(),
    }
}

/// A parameter's value: JSON objects become maps (for `#key`), the rest stays text.
fn value_of(what: &str, value: Option<String>) -> Result<Fetched, AgentError> {
    match value {
        Some(v) => Ok(Fetched::from_secret_string(v)),
        None => Err(AgentError::permanent(format!(
            "{what}: the parameter has no value"
        ))),
    }
}

impl Aws {
    /// One parameter, or every parameter under a path.
    pub async fn ssm_get(&self, r: &SecretRef) -> Result<Fetched, AgentError> {
        match r.ssm_name() {
            SsmName::Parameter(name) => self.ssm_parameter(r, name).await,
            SsmName::Path(path) => self.ssm_path(r, path).await,
        }
    }

    async fn ssm_parameter(&self, r: &SecretRef, name: &str) -> Result<Fetched, AgentError> {
        let what = r.location().to_string();
        let out = self
            .ssm
            .get_parameter()
            .name(selected_name(name, r.version.as_ref()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify(&e, &what, self, SERVICE))?;
        value_of(&what, out.parameter.and_then(|p| p.value))
    }

    /// Every parameter under `path` (recursively), named relative to it.
    async fn ssm_path(&self, r: &SecretRef, path: &str) -> Result<Fetched, AgentError> {
        let what = r.location().to_string();
        let mut map = Map::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .ssm
                .get_parameters_by_path()
                .path(path.trim_end_matches('/'))
                .recursive(true)
                .with_decryption(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify(&e, &what, self, SERVICE))?;
            for p in out.parameters.unwrap_or_default() {
                let (Some(name), Some(value)) = (p.name, p.value) else {
                    continue;
                };
                let relative = name.strip_prefix(path).unwrap_or(&name);
                map.insert(relative.to_string(), Value::String(value));
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        if map.is_empty() {
            return Err(AgentError::permanent(format!(
                "{what}: no parameters under the path that {} may read",
                self.identity
            )));
        }
        Ok(Fetched::Map(map))
    }

    /// `GetParameters` of up to [`BATCH_LIMIT`] current parameters, answered as
    /// [`Aws::batch`] answers: a value, a failure, or `None` to fetch on its own.
    pub async fn ssm_batch<'r>(
        &self,
        refs: &[&'r SecretRef],
    ) -> Result<Vec<(&'r SecretRef, Option<Result<Fetched, AgentError>>)>, AgentError> {
        let what = format!("GetParameters of {} parameters", refs.len());
        let names: Vec<String> = refs.iter().map(|r| r.path.clone()).collect();
        let out = self
            .ssm
            .get_parameters()
            .set_names(Some(names))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify(&e, &what, self, SERVICE))?;
        let mut results: Vec<(&SecretRef, Option<Result<Fetched, AgentError>>)> =
            refs.iter().map(|r| (*r, None)).collect();
        for p in out.parameters.unwrap_or_default() {
            let value = p.value;
            for (r, slot) in results.iter_mut() {
                if p.name.as_deref() == Some(&r.path) || p.arn.as_deref() == Some(&r.path) {
                    *slot = Some(value_of(&r.to_string(), value.clone()).map_err(|e| e.about(r)));
                }
            }
        }
        for invalid in out.invalid_parameters.unwrap_or_default() {
            for (r, slot) in results.iter_mut().filter(|(r, _)| r.path == invalid) {
                *slot = Some(Err(AgentError::permanent(format!(
                    "{}: ParameterNotFound for {}: no such parameter in this account and region",
                    r.location(),
                    self.identity
                ))
                .about(r)));
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_follow_the_version() {
        assert_eq!(selected_name("/p", None), "/p");
        assert_eq!(selected_name("/p", Some(&Version::Number(3))), "/p:3");
        assert_eq!(
            selected_name("/p", Some(&Version::Label("current".into()))),
            "/p:current"
        );
    }

    #[test]
    fn json_values_become_maps_and_missing_values_fail_without_content() {
        assert!(matches!(
            value_of("ssm:/p", Some(r#"{"user":"app"}"#.into())).unwrap(),
            Fetched::Map(_)
        ));
        assert_eq!(
            value_of("ssm:/p", Some("plain".into())).unwrap(),
            Fetched::Text("plain".into())
        );
        assert!(
            value_of("ssm:/p", None)
                .unwrap_err()
                .message
                .contains("no value")
        );
    }
}
