//! Templates (SPEC section 3): minijinja with strict undefined, no loader, no access to
//! the environment or the file system, bounded work (fuel and recursion limits).
//!
//! Two entry points share one environment:
//! - [`check`] at admission: bounded size and nesting, syntax, and that every name it
//!   uses exists; static, it never executes the template (no values, no work);
//! - [`render`] in the pod: the fetched values in, the file content out.
//!
//! In a template for file `<name>`, the fields of the secret `<name>` (if declared) are
//! top-level variables, written `{{ password }}` or, as in External Secrets templates,
//! `{{ .password }}`; every declared secret is reachable as `secrets.<name>` or
//! `secrets['<name-with-dashes>']`.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Value;
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

/// Largest template accepted, in bytes: a config file, not a program.
pub const MAX_TEMPLATE_BYTES: usize = 32 * 1024;
/// Most tokens in one `{{ … }}` or `{% … %}` tag. The parser builds filter chains and
/// operator chains (`a ~ a ~ a …`) as nested nodes that the compiler walks
/// recursively, so this bounds the depth of that walk.
const MAX_TAG_TOKENS: usize = 200;
/// Deepest nesting of blocks (`if`, `for`, `with`, `filter`, block `set`, …).
const MAX_BLOCK_DEPTH: usize = 32;

/// Bounds checked on the source before the parser sees it, so that parsing, compiling
/// and walking a template take bounded time and stack whatever its content. The tokens
/// come from minijinja's own lexer, so strings, escapes, brackets and `raw` blocks are
/// read exactly as the parser will read them.
pub fn check_bounds(src: &str) -> Result<(), String> {
    use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
    if src.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the template is {} bytes; at most {MAX_TEMPLATE_BYTES} (32 KiB)",
            src.len()
        ));
    }
    let (mut depth, mut tokens, mut assign) = (0usize, 0usize, false);
    let mut first: Option<&str> = None;
    let tokens_of = tokenize(
        src,
        false,
        minijinja::syntax::SyntaxConfig,
        WhitespaceConfig::default(),
    );
    for item in tokens_of {
        // A lexical error: the parser reports it, after reading only what was checked.
        let Ok((token, span)) = item else {
            return Ok(());
        };
        match token {
            Token::TemplateData(_) | Token::VariableEnd => {}
            Token::VariableStart | Token::BlockStart => (tokens, first, assign) = (0, None, false),
            Token::BlockEnd => {
                match first.unwrap_or_default() {
                    w if w.starts_with("end") => depth = depth.saturating_sub(1),
                    "if" | "for" | "with" | "filter" | "autoescape" | "macro" | "call"
                    | "block" => depth += 1,
                    "set" if !assign => depth += 1,
                    _ => {}
                }
                if depth > MAX_BLOCK_DEPTH {
                    return Err(format!(
                        "blocks are nested more than {MAX_BLOCK_DEPTH} deep (line {})",
                        span.start_line
                    ));
                }
            }
            other => {
                tokens += 1;
                if tokens == 1
                    && let Token::Ident(word) = other
                {
                    first = Some(word);
                }
                assign |= matches!(other, Token::Assign);
                if tokens > MAX_TAG_TOKENS {
                    return Err(format!(
                        "the tag on line {} has more than {MAX_TAG_TOKENS} parts (names, operators, filters); split it with {{% set %}}",
                        span.start_line
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Admission-time check of template `name`. `declared` holds every declared secret name.
/// Returns a message fit for a denial.
///
/// Static: the template is parsed and compiled, never executed. Its size and nesting
/// are bounded first ([`check_bounds`]); then every name it uses is checked (secrets,
/// fields of its own secret, filters, tests and functions) on every branch, taken or
/// not. What only values can decide (arithmetic, slicing, filters on values) is left
/// to the render in the pod, which the pod's own memory limit and the fuel bound.
pub fn check(name: &str, src: &str, declared: &BTreeSet<String>) -> Result<(), String> {
    check_bounds(src)?;
    let env = environment();
    let normalized = normalize(src);
    let tmpl = env
        .template_from_named_str(name, &normalized)
        .map_err(|e| format!("the template does not parse: {}", describe(&e)))?;
    let globals: BTreeSet<&str> = env.globals().map(|(k, _)| k).collect();
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
        } else if !has_own && !globals.contains(top) {
            return Err(format!(
                "`{top}` is not defined: there is no `secret-injector.io/secret-{name}` whose fields it could be; declare that secret, or write `secrets.<name>.{top}` for a declared secret"
            ));
        }
    }
    undeclared.sort();
    if let Some(missing) = undeclared.first() {
        return Err(undeclared_message(missing, declared));
    }
    check_names(&env, &tmpl, &globals, declared)
}

/// Filters, tests and functions that exist, and `secrets['<name>']` for declared
/// names, read off the compiled instructions (a flat list: no recursion).
fn check_names(
    env: &Environment<'_>,
    tmpl: &minijinja::Template<'_, '_>,
    globals: &BTreeSet<&str>,
    declared: &BTreeSet<String>,
) -> Result<(), String> {
    use minijinja::ErrorKind;
    use minijinja::machinery::Instruction as I;
    let state = env.empty_state();
    let instructions = &minijinja::machinery::get_compiled_template(tmpl).instructions;
    let at = |i: usize| instructions.get(i as u32);
    for i in 0..instructions.len() {
        match at(i) {
            Some(I::ApplyFilter(filter, ..)) => {
                let probe = state.apply_filter(filter, &[]);
                if probe.is_err_and(|e| e.kind() == ErrorKind::UnknownFilter) {
                    return Err(format!("the template uses an unknown filter `{filter}`"));
                }
            }
            Some(I::PerformTest(test, ..)) => {
                let probe = state.perform_test(test, &[]);
                if probe.is_err_and(|e| e.kind() == ErrorKind::UnknownTest) {
                    return Err(format!("the template uses an unknown test `{test}`"));
                }
            }
            Some(I::CallFunction(function, ..)) if !globals.contains(function) => {
                return Err(format!(
                    "the template calls an unknown function `{function}` (known: {})",
                    globals.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
            Some(I::GetItem) if i >= 2 => {
                if let (Some(I::Lookup("secrets")), Some(I::LoadConst(key))) =
                    (at(i - 2), at(i - 1))
                    && let Some(secret) = key.as_str()
                    && !declared.contains(secret)
                {
                    return Err(undeclared_message(secret, declared));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn undeclared_message(missing: &str, declared: &BTreeSet<String>) -> String {
    let known = if declared.is_empty() {
        "none is declared".to_string()
    } else {
        format!(
            "declared: {}",
            crate::contract::reference::short_list(declared.iter().map(String::as_str))
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
    check_bounds(src).map_err(err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The security review's reproductions: each is answered at once, none executes.
    #[test]
    fn hostile_templates_cost_nothing_at_admission() {
        let d = declared(&["x"]);
        // 806 bytes that double a string 40 times: valid, so admitted; the render in
        // the pod is bounded by the pod's own memory limit, not the webhook's.
        let doubling = format!(
            "{{% set a = \"xxxxxxxxxxxxxxxx\" %}}{}{{{{ a }}}}",
            "{% set a = a ~ a %}".repeat(40)
        );
        check("x", &doubling, &d).unwrap();
        check(
            "x",
            "{% for i in range(1000) %}{{ (\"x\"*3000000)|upper }}{% endfor %}",
            &d,
        )
        .unwrap();
        // A filter chain of 10,000 links overflowed the stack: refused before parsing.
        let chain = format!("{{{{ x{} }}}}", "|upper".repeat(10_000));
        let m = check("x", &chain, &d).unwrap_err();
        assert!(m.contains("32 KiB"), "{m}");
        let chain = format!("{{{{ x{} }}}}", "|upper".repeat(1_000));
        let m = check("x", &chain, &d).unwrap_err();
        assert!(
            m.contains("more than 200 parts") && m.contains("line 1"),
            "{m}"
        );
        let concat = format!("{{{{ x{} }}}}", " ~ x".repeat(150));
        assert!(check("x", &concat, &d).unwrap_err().contains("parts"));
        // 50,000 nested ifs took 32.8 s to fail; 33 levels are refused, 32 pass.
        let nested = |n: usize| format!("{}y{}", "{% if x %}".repeat(n), "{% endif %}".repeat(n));
        let m = check("x", &nested(33), &d).unwrap_err();
        assert!(m.contains("nested more than 32"), "{m}");
        check("x", &nested(32), &d).unwrap();
        // Escaped quotes and nested braces do not hide a chain from the bound.
        let escaped = format!("{{{{ \"\\\"\"{} ~ \"\" }}}}", " ~x".repeat(16_000));
        assert!(check("x", &escaped, &d).unwrap_err().contains("32 KiB"));
        let escaped = format!("{{{{ \"\\\"\"{} ~ \"\" }}}}", "~x".repeat(500));
        assert!(check("x", &escaped, &d).unwrap_err().contains("parts"));
        let braces = format!("{{{{ ({{'a': {{'b': 1}}}}{}) }}}}", "~x".repeat(500));
        assert!(check("x", &braces, &d).unwrap_err().contains("parts"));
        assert!(check("x", &nested(50_000), &d).is_err());
        // Within the bounds, the deepest chains still compile on a small stack.
        let chain = format!("{{{{ x{} }}}}", "|upper".repeat(99));
        let concat = format!("{{{{ x{} }}}}", " ~ x".repeat(99));
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                check("x", &chain, &declared(&["x"])).unwrap();
                check("x", &concat, &declared(&["x"])).unwrap();
                check("x", &nested(32), &declared(&["x"])).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn bounds_ignore_strings_comments_and_raw_blocks() {
        let d = declared(&["x"]);
        let long_string = format!("{{{{ '{}' ~ x }}}}", "| ".repeat(500));
        check("x", &long_string, &d).unwrap();
        let comment = format!("{{# {} #}}ok", "{% if %}".repeat(100));
        check("x", &comment, &d).unwrap();
        let raw = format!("{{% raw %}}{}{{% endraw %}}", "{% if x %}".repeat(100));
        check("x", &raw, &d).unwrap();
        check(
            "x",
            "{% set y %}{{ x }}{% endset %}{% set z = y %}{{ z }}",
            &d,
        )
        .unwrap();
    }

    #[test]
    fn names_are_checked_on_every_branch_without_running() {
        let d = declared(&["db"]);
        // `range` and the other globals need no secret of the template's name.
        check(
            "config",
            "{% for i in range(3) %}{{ secrets.db.password }}{% endfor %}",
            &d,
        )
        .unwrap();
        check("config", "{{ dict(a=1) }}{{ namespace() }}", &d).unwrap();
        let m = check(
            "config",
            "{% if false %}{{ secrets.db.pw | nosuch }}{% endif %}",
            &d,
        )
        .unwrap_err();
        assert!(m.contains("unknown filter `nosuch`"), "{m}");
        let m = check(
            "config",
            "{% if false %}{{ 1 is nosuchtest }}{% endif %}",
            &d,
        )
        .unwrap_err();
        assert!(m.contains("unknown test `nosuchtest`"), "{m}");
        let m = check("config", "{% if false %}{{ env('HOME') }}{% endif %}", &d).unwrap_err();
        assert!(m.contains("`env` is not defined"), "{m}");
        let own = declared(&["config"]);
        let m = check("config", "{% if false %}{{ env('HOME') }}{% endif %}", &own).unwrap_err();
        assert!(m.contains("unknown function `env`"), "{m}");
        let m = check(
            "config",
            "{% if false %}{{ secrets['db-x'].a }}{% endif %}",
            &d,
        )
        .unwrap_err();
        assert!(m.contains("secret `db-x`"), "{m}");
        check(
            "config",
            "{% for k in ['db'] %}{{ secrets[k] }}{% endfor %}",
            &d,
        )
        .unwrap();
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
