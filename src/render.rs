//! Templates (SPEC section 3): minijinja with strict undefined, no loader, no access to
//! the environment or the file system, bounded work (fuel and recursion limits).
//!
//! Two entry points share one environment:
//! - [`check`] at admission: syntax, and that every secret named exists, without values;
//! - [`render`] in the pod: the fetched values in, the file content out.
//!
//! In a template for file `<name>`, the fields of the secret `<name>` (if declared) are
//! top-level variables, written `{{ password }}` or, as in External Secrets templates,
//! `{{ .password }}`; every declared secret is reachable as `secrets.<name>` or
//! `secrets['<name-with-dashes>']`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// Upper bound on template work: enough for any config file, not for a runaway loop.
const FUEL: u64 = 200_000;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
}

/// Rewrite Go-template-style leading dots (`{{ .password }}`) into plain names.
///
/// Inside `{{ … }}` and `{% … %}`, a `.` that does not follow an operand (a name, a
/// closing bracket, a digit or a quote) starts a field of the current secret.
pub fn normalize(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = find_block_start(rest) {
        out.push_str(&rest[..start + 2]);
        rest = &rest[start + 2..];
        let close = if src_block_is_expr(&out) { "}}" } else { "%}" };
        let end = rest.find(close).unwrap_or(rest.len());
        let (block, after) = rest.split_at(end);
        let mut prev: Option<char> = None;
        let mut word = String::new();
        let mut in_word = false;
        let mut quote: Option<char> = None;
        for c in block.chars() {
            if let Some(q) = quote {
                out.push(c);
                if c == q {
                    quote = None;
                    prev = Some(c);
                }
                continue;
            }
            let after_operand = prev
                .is_some_and(|p| p.is_alphanumeric() || matches!(p, '_' | ')' | ']' | '"' | '\''))
                && !KEYWORDS.contains(&word.as_str());
            if c == '.' && !after_operand {
                // a leading dot: drop it
                continue;
            }
            if c == '"' || c == '\'' {
                quote = Some(c);
            }
            out.push(c);
            if c.is_alphanumeric() || c == '_' {
                if !in_word {
                    word.clear();
                }
                word.push(c);
                in_word = true;
            } else {
                in_word = false;
                if !c.is_whitespace() {
                    word.clear();
                }
            }
            if !c.is_whitespace() {
                prev = Some(c);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Words after which a `.` starts an expression rather than an attribute.
const KEYWORDS: &[&str] = &[
    "if", "elif", "in", "not", "and", "or", "is", "else", "for", "set",
];

fn find_block_start(s: &str) -> Option<usize> {
    match (s.find("{{"), s.find("{%")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn src_block_is_expr(out: &str) -> bool {
    out.ends_with("{{")
}

/// Admission-time check of template `name`. `declared` holds every declared secret name.
/// Returns a message fit for a denial.
pub fn check(name: &str, src: &str, declared: &BTreeSet<String>) -> Result<(), String> {
    let env = environment();
    let normalized = normalize(src);
    let tmpl = env
        .template_from_named_str(name, &normalized)
        .map_err(|e| format!("the template does not parse: {}", describe(&e)))?;
    let has_own = declared.contains(name);
    let mut undeclared: Vec<String> = Vec::new();
    for var in tmpl.undeclared_variables(true) {
        let mut parts = var.splitn(3, '.');
        let top = parts.next().unwrap_or_default();
        if top == "secrets" {
            if let Some(secret) = parts.next()
                && !declared.contains(secret)
            {
                undeclared.push(secret.to_string());
            }
        } else if !has_own {
            return Err(format!(
                "`{top}` is not defined: there is no `secret-injector.io/secret-{name}` whose fields it could be; declare that secret, or write `secrets.<name>.{top}` for a declared secret"
            ));
        }
    }
    if let Some(missing) = undeclared.first() {
        return Err(undeclared_message(missing, declared));
    }
    // A dry run catches what the static pass cannot see (`secrets['db-creds']`).
    let probe = Arc::new(SecretsProbe {
        declared: declared.clone(),
        missing: Mutex::new(None),
    });
    let root = Value::from_object(RootProbe {
        secrets: Value::from_dyn_object(probe.clone()),
        has_own,
    });
    match tmpl.render(root) {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Some(missing) = probe.missing.lock().expect("not poisoned").clone() {
                Err(undeclared_message(&missing, declared))
            } else {
                use minijinja::ErrorKind::*;
                match e.kind() {
                    // Names that do not exist whatever the values are.
                    UnknownFilter | UnknownTest | UnknownFunction | UnknownMethod
                    | TemplateNotFound | SyntaxError => {
                        Err(format!("the template fails: {}", describe(&e)))
                    }
                    OutOfFuel => {
                        Err("the template does too much work (loop limit reached)".to_string())
                    }
                    // Arithmetic, slicing or filters on placeholder values: the real
                    // values decide, in the pod.
                    _ => Ok(()),
                }
            }
        }
    }
}

fn undeclared_message(missing: &str, declared: &BTreeSet<String>) -> String {
    let known = if declared.is_empty() {
        "none is declared".to_string()
    } else {
        format!(
            "declared: {}",
            declared.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    format!(
        "the template names secret `{missing}`, which is not declared ({known}); add `secret-injector.io/secret-{missing}: <ref>`"
    )
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    if let Some(line) = e.line() {
        msg = format!("{msg} (line {line})");
    }
    msg
}

/// Why a render failed in the pod. It never contains a value.
#[derive(Debug, thiserror::Error)]
#[error("template for file `{file}`: {message}")]
pub struct RenderError {
    pub file: String,
    pub message: String,
}

/// Render template `name` with the fetched values. `secrets` maps each declared secret
/// name to its value (a string for `#key` references, else a map).
pub fn render(
    name: &str,
    src: &str,
    secrets: &BTreeMap<String, serde_json::Value>,
) -> Result<String, RenderError> {
    let err = |message: String| RenderError {
        file: name.to_string(),
        message,
    };
    let env = environment();
    let normalized = normalize(src);
    let tmpl = env
        .template_from_named_str(name, &normalized)
        .map_err(|e| err(describe(&e)))?;
    let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(serde_json::Value::Object(own)) = secrets.get(name) {
        for (k, v) in own {
            ctx.insert(k.clone(), Value::from_serialize(v));
        }
    }
    ctx.insert("secrets".to_string(), Value::from_serialize(secrets));
    tmpl.render(ctx).map_err(|e| {
        // Only the kind of error and the line: minijinja's detail can quote an operand,
        // which here is a secret value.
        let detail = match e.kind() {
            minijinja::ErrorKind::UndefinedError => {
                "a field it uses is missing from the secret (undefined value)".to_string()
            }
            kind => kind.to_string(),
        };
        err(match e.line() {
            Some(line) if !detail.contains("(line") => format!("{detail} (line {line})"),
            _ => detail,
        })
    })
}

/// Admission-time stand-in for a value: any field of it exists.
#[derive(Debug)]
struct Placeholder;

impl Object for Placeholder {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
}

/// Admission-time `secrets`: declared names resolve, others are recorded.
#[derive(Debug)]
struct SecretsProbe {
    declared: BTreeSet<String>,
    missing: Mutex<Option<String>>,
}

impl Object for SecretsProbe {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if self.declared.contains(key) {
            Some(Value::from_object(Placeholder))
        } else {
            self.missing
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| key.to_string());
            None
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.declared
                .iter()
                .map(|s| Value::from(s.as_str()))
                .collect(),
        )
    }
}

#[derive(Debug)]
struct RootProbe {
    secrets: Value,
    has_own: bool,
}

impl Object for RootProbe {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "secrets" => Some(self.secrets.clone()),
            _ if self.has_own => Some(Value::from_object(Placeholder)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalize_strips_leading_dots_only() {
        assert_eq!(normalize("{{ .password }}"), "{{ password }}");
        assert_eq!(
            normalize("a {{- .user -}}:{{.pw}}"),
            "a {{- user -}}:{{pw}}"
        );
        assert_eq!(
            normalize("{{ secrets.db.password }}"),
            "{{ secrets.db.password }}"
        );
        assert_eq!(normalize("{{ 'a.b' ~ .x }}"), "{{ 'a.b' ~ x }}");
        assert_eq!(
            normalize("{% if .enabled %}y{% endif %}"),
            "{% if enabled %}y{% endif %}"
        );
        assert_eq!(normalize("{% if not .x and .y %}"), "{% if not x and y %}");
        assert_eq!(normalize("plain . text"), "plain . text");
        assert_eq!(normalize("{{ x.y }}.{{ .z }}"), "{{ x.y }}.{{ z }}");
    }

    #[test]
    fn check_accepts_own_fields_and_declared_secrets() {
        let d = declared(&["pgpass", "db", "db-creds"]);
        check("pgpass", "h:5432:app:{{ .username }}:{{ .password }}", &d).unwrap();
        check("config.yaml", "pw: {{ secrets.db.password }}", &d).unwrap();
        check("url", "{{ secrets['db-creds'].username }}", &d).unwrap();
        check("x", "{% for k in secrets %}{{ k }}{% endfor %}", &d).unwrap();
    }

    #[test]
    fn check_rejects_undeclared_secrets() {
        let d = declared(&["db"]);
        let m = check("config.yaml", "{{ secrets.api.key }}", &d).unwrap_err();
        assert!(m.contains("secret `api`"), "{m}");
        assert!(m.contains("secret-injector.io/secret-api"), "{m}");
        let m = check("config.yaml", "{{ secrets['db-creds'].user }}", &d).unwrap_err();
        assert!(m.contains("secret `db-creds`"), "{m}");
        let m = check("config.yaml", "{{ .password }}", &d).unwrap_err();
        assert!(m.contains("`password` is not defined"), "{m}");
    }

    #[test]
    fn check_accepts_filters_and_arithmetic_on_values() {
        let d = declared(&["db"]);
        check(
            "f",
            "{{ secrets.db.port | int + 1 }} {{ secrets.db.password[:4] }}",
            &d,
        )
        .unwrap();
        check("f", "{{ secrets.db.password | split(':') | first }}", &d).unwrap();
        let m = check("f", "{{ secrets.db.password | nosuchfilter }}", &d).unwrap_err();
        assert!(
            m.contains("nosuchfilter") || m.contains("unknown filter"),
            "{m}"
        );
    }

    #[test]
    fn runtime_errors_never_quote_a_value() {
        let secrets = BTreeMap::from([("db".to_string(), json!({"n": 1234, "s": "s3cr3t-text"}))]);
        let overflow = "{{ secrets.db.n * 170141183460469231731687303715884105727 }}";
        let e = render("big", overflow, &secrets).unwrap_err();
        assert!(!e.message.contains("1234"), "{e}");
        let e = render("f", "{{ secrets.db.s - 1 }}", &secrets).unwrap_err();
        assert!(!e.message.contains("s3cr3t-text"), "{e}");
    }

    #[test]
    fn check_reports_syntax_errors_with_line() {
        let m = check("f", "ok\n{{ secrets.db.password ", &declared(&["db"])).unwrap_err();
        assert!(m.contains("does not parse"), "{m}");
    }

    #[test]
    fn render_fills_values_and_is_strict() {
        let secrets = BTreeMap::from([
            (
                "pgpass".to_string(),
                json!({"username": "app", "password": "s3cr3t-value"}),
            ),
            ("api".to_string(), json!("key-123")),
        ]);
        let out = render(
            "pgpass",
            "h:5432:app:{{ .username }}:{{ password }} {{ secrets.api }}\n",
            &secrets,
        )
        .unwrap();
        assert_eq!(out, "h:5432:app:app:s3cr3t-value key-123\n");
        let e = render("pgpass", "{{ .missing }}", &secrets).unwrap_err();
        assert!(e.to_string().contains("missing from the secret"), "{e}");
        assert!(!e.to_string().contains("s3cr3t-value"));
    }

    #[test]
    fn tojson_escapes_values_for_json_and_yaml_files() {
        let secrets = BTreeMap::from([("db".to_string(), json!({"password": "a\"b"}))]);
        let out = render(
            "c.json",
            "{\"pw\": {{ secrets.db.password | tojson }}}",
            &secrets,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["pw"], "a\"b");
    }

    #[test]
    fn render_cannot_loop_forever_or_read_the_environment() {
        let secrets = BTreeMap::new();
        let e = render(
            "f",
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            &secrets,
        )
        .unwrap_err();
        assert!(!e.message.is_empty());
        // No function exposes the environment or files.
        assert!(render("f", "{{ env('HOME') }}", &secrets).is_err());
        assert!(render("f", "{% include '/etc/passwd' %}", &secrets).is_err());
    }
}
