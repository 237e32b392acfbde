//! The secret stores, as seen from inside the pod: fetch a reference with the pod's
//! identity, classify failures, pick `#key`s out of what came back.
//!
//! Errors carry references, identities and causes, never a value: what a store returns
//! is only ever held in [`Fetched`] and written to the tmpfs files.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod rest;
pub mod ssm;
pub mod vault;

use std::fmt;

use serde_json::{Map, Value};

use contract::reference::SecretRef;

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Connection refused or reset, timeouts, 5xx, throttling.
    Transient,
    /// Permission denied, not found, missing key, bad template, bad token file.
    Permanent,
}

/// The one error of the in-pod agent: a failure to log in, get a secret, assemble or
/// write the files. The message is the line to print (it names the reference, the
/// identity and the cause) and never holds a value; `reference` says which secret it is
/// about, so no step has to read the message to decide anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentError {
    pub kind: Kind,
    pub message: String,
    pub reference: Option<SecretRef>,
}

impl AgentError {
    pub fn transient(message: impl Into<String>) -> Self {
        AgentError {
            kind: Kind::Transient,
            message: message.into(),
            reference: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        AgentError {
            kind: Kind::Permanent,
            message: message.into(),
            reference: None,
        }
    }

    /// The same failure, about `r`.
    pub fn about(mut self, r: &SecretRef) -> Self {
        self.reference = Some(r.clone());
        self
    }

    /// The same failure, its message starting with `what` (the reference it stopped).
    pub fn naming(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.kind == Kind::Transient
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

/// What a store returned for one location (provider, path, version).
#[derive(Clone, PartialEq)]
pub enum Fetched {
    /// A key/value map (Vault data, or an AWS SecretString that is a JSON object).
    Map(Map<String, Value>),
    /// A plain string (an AWS SecretString that is not a JSON object).
    Text(String),
    /// An AWS SecretBinary.
    Binary(Vec<u8>),
}

// Never print a value, even in a debug log or a panic.
impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fetched::Map(m) => write!(f, "Map({} keys)", m.len()),
            Fetched::Text(s) => write!(f, "Text({} bytes)", s.len()),
            Fetched::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl Fetched {
    /// An AWS SecretString: a JSON object becomes a map, anything else stays text.
    pub fn from_secret_string(s: String) -> Fetched {
        if s.trim_start().starts_with('{')
            && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&s)
        {
            return Fetched::Map(map);
        }
        Fetched::Text(s)
    }

    /// The value a reference names: the whole secret, or its `#key`.
    pub fn select(&self, r: &SecretRef) -> Result<Selected, AgentError> {
        let Some(key) = &r.key else {
            return Ok(self.clone());
        };
        match self {
            Fetched::Map(m) => match m.get(key) {
                Some(Value::String(s)) => Ok(Fetched::Text(s.clone())),
                Some(Value::Object(o)) => Ok(Fetched::Map(o.clone())),
                Some(Value::Null) | None => Err(AgentError::permanent(format!(
                    "{r}: the secret has no key `{key}` (its keys: {})",
                    shown_keys(m)
                ))),
                Some(other) => Ok(Fetched::Text(other.to_string())),
            },
            Fetched::Text(_) => Err(AgentError::permanent(format!(
                "{r}: the secret is a plain string, not JSON, so it has no key `{key}`; drop `#{key}` to use the whole string"
            ))),
            Fetched::Binary(_) => Err(AgentError::permanent(format!(
                "{r}: the secret is binary, so it has no key `{key}`; drop `#{key}`"
            ))),
        }
    }
}

/// How many of a secret's keys a message lists.
const SHOWN_KEYS: usize = 20;

/// The keys of a secret, sorted, for a message: the first [`SHOWN_KEYS`], each escaped
/// (they come from the store: no forged line, no terminal escape).
fn shown_keys(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut shown: Vec<String> = keys
        .iter()
        .take(SHOWN_KEYS)
        .map(|k| contract::text::Escaped(k).to_string())
        .collect();
    if keys.len() > SHOWN_KEYS {
        shown.push(format!("and {} more", keys.len() - SHOWN_KEYS));
    }
    shown.join(", ")
}

/// What the stores returned, by location ([`SecretRef::location`]).
pub type Values = std::collections::HashMap<SecretRef, Fetched>;

/// The value of one reference, after `#key`: the same shapes as a whole secret.
pub type Selected = Fetched;

impl Fetched {
    /// The bytes of a file holding this value: text as is, a map as JSON.
    pub fn file_bytes(&self) -> Vec<u8> {
        match self {
            Fetched::Map(m) => serde_json::to_vec(m).expect("a map serializes"),
            Fetched::Text(s) => s.as_bytes().to_vec(),
            Fetched::Binary(b) => b.clone(),
        }
    }

    /// The value as templates see it.
    pub fn template_value(&self) -> Value {
        match self {
            Fetched::Map(m) => Value::Object(m.clone()),
            Fetched::Text(s) => Value::String(s.clone()),
            Fetched::Binary(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::reference::parse;

    #[test]
    fn selects_keys_and_explains_missing_ones_without_values() {
        let f = Fetched::from_secret_string(
            r#"{"username":"app","password":"pw-123","port":5432}"#.into(),
        );
        assert_eq!(
            f.select(&parse("aws:db#password").unwrap()).unwrap(),
            Fetched::Text("pw-123".into())
        );
        assert_eq!(
            f.select(&parse("aws:db#port").unwrap()).unwrap(),
            Fetched::Text("5432".into())
        );
        let e = f.select(&parse("aws:db#pass").unwrap()).unwrap_err();
        assert_eq!(e.kind, Kind::Permanent);
        assert!(e.message.contains("no key `pass`"), "{e}");
        assert!(e.message.contains("password, port, username"), "{e}");
        assert!(!e.message.contains("pw-123"));
        let whole = f.select(&parse("aws:db").unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(whole.file_bytes()).unwrap(),
            r#"{"username":"app","password":"pw-123","port":5432}"#
        );
        let text = Fetched::from_secret_string("just-a-token".into());
        assert!(
            text.select(&parse("aws:t#k").unwrap())
                .unwrap_err()
                .message
                .contains("not JSON")
        );
        assert_eq!(format!("{:?}", f), "Map(3 keys)");
    }

    /// A store's keys are listed escaped and cut: a key cannot forge a line.
    #[test]
    fn listed_keys_are_escaped_and_cut() {
        let mut m = Map::new();
        m.insert("a\n2026 INFO forged\u{1b}[31m".into(), Value::Null);
        for i in 0..30 {
            m.insert(format!("k{i:02}"), Value::Null);
        }
        let e = Fetched::Map(m)
            .select(&parse("vault:secret/x#missing").unwrap())
            .unwrap_err();
        assert!(
            !e.message.contains('\n') && !e.message.contains('\u{1b}'),
            "{e}"
        );
        assert!(e.message.contains("a\\n2026"), "{e}");
        assert!(e.message.ends_with("and 11 more)"), "{e}");
    }
}
