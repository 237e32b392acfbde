//! The pure step of the agent: from what the stores returned to the bytes of every file.
//! Select each reference's `#key`, render the templates, build env mode's variables.
//! No I/O, so every rule here is unit-tested on fixtures.

use std::collections::BTreeMap;

use crate::providers::{AgentError, Fetched, Selected, Values};
use contract::envfile::{EnvFile, is_loader_variable, kubelet_env_file, valid_env_name};
use contract::names::{ENV_FILE_NAME, KUBELET_ENV_FILE_NAME};
use contract::plan::{EnvDelivery, FetchPlan};
use contract::reference::SecretRef;
use contract::render;
use contract::text::Escaped;
use runtime::files::FileOut;

/// Everything to write: the files of the secrets volume and, in env mode, the env file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assembled {
    pub files: Vec<FileOut>,
    pub env_file: Option<FileOut>,
    /// How many variables the env file holds.
    pub env_vars: usize,
    /// Whether the env-mode wrapper goes next to the env file (`env_delivery: exec`).
    pub wrapper: bool,
    /// Why the kubelet's env file (`env_delivery: file-key-ref`) could not be made, naming
    /// the variable: [`init::stage_env`](crate::init::stage_env) fails with it,
    /// before anything is written. Not an error of the whole assembly, so a refresh
    /// sidecar, which wrote the env file once, keeps rotating the files when a value
    /// later gains a character the format cannot carry.
    pub env_error: Option<String>,
}

/// Build every file of `plan` from `values`; nothing is written.
pub fn assemble(plan: &FetchPlan, values: &Values) -> Result<Assembled, AgentError> {
    let select = |r: &SecretRef| -> Result<Selected, AgentError> {
        values
            .get(&r.location())
            .ok_or_else(|| AgentError::permanent(format!("{r}: not fetched")).about(r))?
            .select(r)
            .map_err(|e| e.about(r))
    };
    let mut selected: BTreeMap<&str, Selected> = BTreeMap::new();
    for (name, r) in &plan.secrets {
        selected.insert(name, select(r)?);
    }
    let mut assembled = Assembled {
        files: files(plan, &selected)?,
        ..Assembled::default()
    };
    if plan.env_mode() {
        let vars = env_vars(plan, &select)?;
        // What init let through: exec refuses any other loader variable.
        let env_file = EnvFile {
            loader_allowed: vars
                .keys()
                .filter(|k| is_loader_variable(k))
                .cloned()
                .collect(),
            vars,
        };
        assembled.env_vars = env_file.vars.len();
        assembled.wrapper = plan.env_delivery == EnvDelivery::Exec;
        assembled.env_file = Some(match plan.env_delivery {
            EnvDelivery::Exec => {
                let json = serde_json::to_vec(&env_file).expect("env serializes");
                FileOut::new(ENV_FILE_NAME, json, plan.env_mode_bits())
            }
            // Read by the kubelet, for the `fileKeyRef` entries admission added.
            EnvDelivery::FileKeyRef => match kubelet_env_file(&env_file.vars) {
                Ok(bytes) => FileOut::new(KUBELET_ENV_FILE_NAME, bytes, plan.env_mode_bits()),
                Err(e) => {
                    assembled.env_error = Some(e);
                    return Ok(assembled);
                }
            },
        });
    }
    Ok(assembled)
}

/// The secret files and the rendered templates, with their modes.
fn files(
    plan: &FetchPlan,
    selected: &BTreeMap<&str, Selected>,
) -> Result<Vec<FileOut>, AgentError> {
    let template_ctx: BTreeMap<String, serde_json::Value> = selected
        .iter()
        .map(|(k, v)| (k.to_string(), v.template_value()))
        .collect();
    let mut files = Vec::new();
    for (name, mode) in &plan.files {
        let bytes = match plan.templates.get(name) {
            Some(src) => render::render(name, src, &template_ctx)
                .map_err(|e| AgentError::permanent(e.to_string()))?
                .into_bytes(),
            None => selected
                .get(name.as_str())
                .ok_or_else(|| {
                    AgentError::permanent(format!("file `{name}` has no secret or template"))
                })?
                .file_bytes(),
        };
        files.push(FileOut::new(name.clone(), bytes, *mode));
    }
    Ok(files)
}

/// Env mode's variables: every key of the `env-from` secrets, then each `env-<VAR>`
/// (which wins over a key of the same name).
fn env_vars(
    plan: &FetchPlan,
    select: &dyn Fn(&SecretRef) -> Result<Selected, AgentError>,
) -> Result<BTreeMap<String, String>, AgentError> {
    let mut vars = BTreeMap::new();
    for r in &plan.env_from {
        let Fetched::Map(map) = select(r)? else {
            return Err(AgentError::permanent(format!(
                "{r}: env-from needs a JSON object or key/value secret, and this one is a plain value"
            ))
            .about(r));
        };
        check_loader_keys(r, map.keys(), plan)?;
        for (k, v) in map {
            if !valid_env_name(&k) {
                return Err(AgentError::permanent(format!(
                    "{r}: key `{k}` is not a valid environment variable name, so env-from cannot load it"
                ))
                .about(r));
            }
            vars.insert(k, json_to_env(v));
        }
    }
    for (var, r) in &plan.env {
        let value = match select(r)? {
            Fetched::Text(s) => s,
            Fetched::Map(m) => serde_json::to_string(&m).expect("a map serializes"),
            Fetched::Binary(b) => String::from_utf8(b).map_err(|_| {
                AgentError::permanent(format!(
                    "{r}: binary secret is not UTF-8 text, so it cannot be {var}"
                ))
                .about(r)
            })?,
        };
        vars.insert(var.clone(), value);
    }
    Ok(vars)
}

/// Keys of an `env-from` secret that are loader variables ([`is_loader_variable`]) are
/// refused unless the pod allows them with `env-from-allow`, or names the variable
/// itself with `env-<VAR>` (whose value then wins). The secret's writer chooses the keys;
/// only the pod's author may choose what code the app loads.
fn check_loader_keys<'a>(
    r: &SecretRef,
    keys: impl Iterator<Item = &'a String>,
    plan: &FetchPlan,
) -> Result<(), AgentError> {
    let mut refused: Vec<&str> = keys
        .filter(|k| is_loader_variable(k))
        .filter(|k| !plan.env_from_allow.contains(*k) && !plan.env.contains_key(*k))
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort_unstable();
    let names = refused
        .iter()
        .map(|k| format!("`{}`", Escaped(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let (what, they, them) = if refused.len() == 1 {
        (
            format!("key {names} is a loader variable"),
            "it changes",
            "it",
        )
    } else {
        (
            format!("keys {names} are loader variables"),
            "they change",
            "them",
        )
    };
    let example: Vec<&str> = plan
        .env_from_allow
        .iter()
        .map(String::as_str)
        .chain(refused.iter().copied())
        .collect();
    Err(AgentError::permanent(format!(
        "{r}: {what} ({they} which code the app runs), so env-from refuses {them}; if the app needs {them} from this secret, add {them} to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: {})",
        example.join(",")
    ))
    .about(r))
}

fn json_to_env(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::reference::parse;

    fn plan(env_from_allow: &[&str], env: &[&str]) -> FetchPlan {
        let r = parse("vault:kv/x").unwrap();
        FetchPlan {
            env_from: vec![r.clone()],
            env_from_allow: env_from_allow.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|v| (v.to_string(), r.clone())).collect(),
            ..FetchPlan::default()
        }
    }

    #[test]
    fn env_from_refuses_loader_variables_unless_allowed() {
        let r = parse("aws:team/app").unwrap();
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let ok = keys(&["DB_PASSWORD", "API_KEY"]);
        assert!(check_loader_keys(&r, ok.iter(), &plan(&[], &[])).is_ok());

        let bad = keys(&["DB_PASSWORD", "LD_PRELOAD"]);
        let e = check_loader_keys(&r, bad.iter(), &plan(&[], &[])).unwrap_err();
        assert_eq!(e.reference.as_ref(), Some(&r));
        let e = e.message;
        assert!(
            e.starts_with("aws:team/app: key `LD_PRELOAD` is a loader variable")
                && e.contains(
                    "add it to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: LD_PRELOAD)"
                )
                && !e.contains('\n'),
            "{e}"
        );
        // allowed by the pod, or named by the pod itself: loaded
        assert!(check_loader_keys(&r, bad.iter(), &plan(&["LD_PRELOAD"], &[])).is_ok());
        assert!(check_loader_keys(&r, bad.iter(), &plan(&[], &["LD_PRELOAD"])).is_ok());

        // several: all named, and the example keeps what is already allowed
        let bad = keys(&["PATH", "NODE_OPTIONS", "LD_AUDIT"]);
        let e = check_loader_keys(&r, bad.iter(), &plan(&["NODE_OPTIONS"], &[]))
            .unwrap_err()
            .message;
        assert!(
            e.contains("keys `LD_AUDIT`, `PATH` are loader variables")
                && e.contains("env-from-allow: NODE_OPTIONS,LD_AUDIT,PATH"),
            "{e}"
        );
    }

    fn values(pairs: &[(&str, Fetched)]) -> Values {
        pairs
            .iter()
            .map(|(r, v)| (parse(r).unwrap(), v.clone()))
            .collect()
    }

    /// One location read once serves a file, a template and a variable; the files keep
    /// their modes, the env file has the default mode and the variables as JSON.
    #[test]
    fn assembles_files_templates_and_env_from_one_location() {
        let db = parse("vault:kv/db#password").unwrap();
        let plan = FetchPlan {
            secrets: [("db".to_string(), db.clone())].into(),
            templates: [("dsn".to_string(), "pw={{ secrets.db }}".to_string())].into(),
            files: [("db".to_string(), 0o400), ("dsn".to_string(), 0o440)].into(),
            env: [("DB_PASSWORD".to_string(), db.clone())].into(),
            default_mode: 0o444,
            ..FetchPlan::default()
        };
        let map = serde_json::json!({"password": "pw-1", "user": "app"});
        let serde_json::Value::Object(map) = map else {
            unreachable!()
        };
        let out = assemble(&plan, &values(&[("vault:kv/db", Fetched::Map(map))])).unwrap();
        assert_eq!(
            out.files,
            [
                FileOut::new("db", "pw-1", 0o400),
                FileOut::new("dsn", "pw=pw-1", 0o440)
            ]
        );
        let env = out.env_file.unwrap();
        assert_eq!((env.name.as_str(), env.mode), (ENV_FILE_NAME, 0o444));
        let file: EnvFile = serde_json::from_slice(&env.bytes).unwrap();
        assert_eq!(file.vars["DB_PASSWORD"], "pw-1");
        assert_eq!(out.env_vars, 1);
    }

    /// With `env_delivery: file-key-ref` the env file is the kubelet's `NAME='value'`
    /// file, without the wrapper; a value it cannot carry fails, naming the variable.
    #[test]
    fn file_key_ref_writes_the_kubelet_env_file() {
        let plan = FetchPlan {
            env: [
                (
                    "DB_PASSWORD".to_string(),
                    parse("vault:kv/db#password").unwrap(),
                ),
                ("DB_USER".to_string(), parse("vault:kv/db#user").unwrap()),
            ]
            .into(),
            env_delivery: EnvDelivery::FileKeyRef,
            ..FetchPlan::default()
        };
        let fetched = |pw: &str| {
            let serde_json::Value::Object(map) = serde_json::json!({"password": pw, "user": "app"})
            else {
                unreachable!()
            };
            values(&[("vault:kv/db", Fetched::Map(map))])
        };
        let out = assemble(&plan, &fetched("pw #1\nline 2")).unwrap();
        let env = out.env_file.unwrap();
        assert_eq!(
            (env.name.as_str(), env.mode),
            (KUBELET_ENV_FILE_NAME, 0o444)
        );
        assert_eq!(
            String::from_utf8(env.bytes).unwrap(),
            "DB_PASSWORD='pw #1\nline 2'\nDB_USER='app'\n"
        );
        assert!(!out.wrapper);
        // A value the format cannot carry: no env file, and the reason, for init to fail
        // with (and for a refresh sidecar to skip once the env file is written).
        let out = assemble(&plan, &fetched("it's-secret-5")).unwrap();
        assert_eq!(out.env_file, None);
        let e = out.env_error.unwrap();
        assert!(e.contains("`DB_PASSWORD`"), "{e}");
        assert!(!e.contains("secret-5"), "{e}");
    }

    /// Failures name the reference they are about, in the field as in the message.
    #[test]
    fn failures_carry_their_reference() {
        let r = parse("aws:app#token").unwrap();
        let plan = FetchPlan {
            secrets: [("t".to_string(), r.clone())].into(),
            files: [("t".to_string(), 0o400)].into(),
            ..FetchPlan::default()
        };
        let text = values(&[("aws:app", Fetched::Text("tok-secret-9".into()))]);
        let e = assemble(&plan, &text).unwrap_err();
        assert_eq!(e.reference, Some(r.clone()));
        assert!(
            e.message
                .starts_with("aws:app#token: the secret is a plain string")
        );
        assert!(!e.message.contains("tok-secret-9"), "{e}");
        let e = assemble(&plan, &Values::new()).unwrap_err();
        assert_eq!(e.reference, Some(r));

        let binary = parse("aws:bin").unwrap();
        let plan = FetchPlan {
            env: [("BIN".to_string(), binary.clone())].into(),
            ..FetchPlan::default()
        };
        let e = assemble(
            &plan,
            &values(&[("aws:bin", Fetched::Binary(vec![0xff, 0xfe]))]),
        )
        .unwrap_err();
        assert_eq!(e.reference, Some(binary));
        assert!(
            e.message.contains("not UTF-8 text, so it cannot be BIN"),
            "{e}"
        );
    }
}
