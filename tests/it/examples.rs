//! Every template in `examples/` renders values with hostile characters (`"`, `\`, `@`,
//! `:`, `/`, a newline) into a file that reads them back exactly: the examples are what
//! users copy.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::util;

const HOSTILE: &str = "p\"a\\s@:/w\nx";
const USER: &str = "u@s:e/r\"\\";

/// The `template-<name>` annotations of the example's pod template.
fn templates(example: &str) -> BTreeMap<String, String> {
    let docs = util::fixture_docs(&format!("examples/{example}"));
    let workload = docs
        .iter()
        .find(|d| d["spec"]["template"].is_object() || d["spec"]["jobTemplate"].is_object())
        .expect("a workload");
    workload["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("secret-injector.io/template-")?.to_string(),
                v.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn render(name: &str, src: &str, secrets: Value) -> String {
    let Value::Object(map) = secrets else {
        unreachable!()
    };
    let secrets: BTreeMap<String, Value> = map.into_iter().collect();
    contract::render::render(name, src, &secrets).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn vault_kv_config_yaml_reads_back_hostile_values() {
    let t = templates("vault-kv-config.yaml");
    let out = render(
        "config.yaml",
        &t["config.yaml"],
        json!({"db": {"username": USER, "password": HOSTILE}, "api-key": HOSTILE}),
    );
    let parsed: Value = serde_yaml_ng::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(parsed["database"]["user"], USER);
    assert_eq!(parsed["database"]["password"], HOSTILE);
    assert_eq!(parsed["upstream"]["api_key"], HOSTILE);
}

#[test]
fn dynamic_credentials_url_reads_back_hostile_values() {
    let t = templates("job-dynamic-db-credentials.yaml");
    let out = render(
        "database-url",
        &t["database-url"],
        json!({"db-creds": {"username": USER, "password": HOSTILE}}),
    );
    let url = reqwest::Url::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let decode = percent_decode;
    assert_eq!(url.host_str(), Some("cluster-example-rw.app.svc"));
    assert_eq!(decode(url.username()), USER);
    assert_eq!(decode(url.password().unwrap()), HOSTILE);
}

/// A `.pgpass` line cannot hold a newline (libpq reads line by line), so the value
/// here has every other hostile character.
#[test]
fn cnpg_pgpass_reads_back_hostile_values() {
    for example in ["cnpg-app-credentials.yaml", "cnpg-gcp-secret-manager.yaml"] {
        pgpass_reads_back(example);
    }
}

fn pgpass_reads_back(example: &str) {
    let t = templates(example);
    let password = HOSTILE.replace('\n', "");
    let out = render(
        "pgpass",
        &t["pgpass"],
        json!({"pgpass": {"username": USER, "password": password}}),
    );
    // libpq's reading: fields split at an unescaped `:`, `\x` stands for `x`.
    let mut fields = vec![String::new()];
    let mut chars = out.trim_end_matches('\n').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().unwrap().extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    assert_eq!(
        fields,
        ["cluster-example-rw", "5432", "app", USER, password.as_str()],
        "{example}"
    );
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
