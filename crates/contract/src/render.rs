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
/// Returns every problem found, each a message fit for a denial (the caller names the
/// annotation), in the order of the template's lines.
///
/// Static: the template is parsed and compiled, never executed. Its size and nesting
/// are bounded first ([`check_bounds`]); then every name it uses is checked (secrets,
/// fields of its own secret, filters, tests and functions) on every branch, taken or
/// not, and all the problems are reported together. A template over the bounds, or one
/// that does not parse, gets that one problem only: minijinja's parser stops at the
/// first syntax error, so nothing after it can be checked until it is fixed.
/// What only values can decide (arithmetic, slicing, filters on values) is left to the
/// render in the pod, which the pod's own memory limit and the fuel bound.
pub fn check(name: &str, src: &str, declared: &BTreeSet<String>) -> Result<(), Vec<String>> {
    check_bounds(src).map_err(|m| vec![m])?;
    let env = environment();
    let normalized = normalize(src);
    let tmpl = env.template_from_named_str(name, &normalized).map_err(|e| {
        vec![format!(
            "the template does not parse: {}; fix this first: its names, filters and tests are checked once it parses",
            describe(&e)
        )]
    })?;
    let found = Found::collect(&env, &tmpl, name, declared);
    let multiline = normalized.trim_end().contains('\n');
    let problems = found.messages(multiline, declared, MAX_TEMPLATE_PROBLEMS);
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems)
}

/// Problems reported for one template at most; beyond, they are only counted.
const MAX_TEMPLATE_PROBLEMS: usize = 20;

/// The globals of [`environment`] that a template may call.
const GLOBALS_HINT: &str = "debug, dict, namespace, range";

/// minijinja's builtin filters (with the features this crate enables), for "did you
/// mean"; a test checks that each is known to [`environment`]. Separated by spaces.
const FILTERS: &str = "\
    abs attr batch bool capitalize chain count d default dictsort e escape first float \
    format groupby indent int items join last length lines list lower map max min pprint \
    reject rejectattr replace reverse round safe select selectattr slice sort split string \
    sum title tojson trim unique upper urlencode zip";

/// minijinja's builtin tests, for "did you mean" (the operator aliases left out).
const TESTS: &str = "\
    boolean defined divisibleby endingwith eq escaped even false filter float ge gt in \
    integer iterable le lower lt mapping ne none number odd safe sameas sequence \
    startingwith string test true undefined upper";

/// Where a problem is: the line of its first use, and the instruction's index (the
/// order within a line). Sorted, places follow the template's text.
type Place = (Option<usize>, usize);

/// What is wrong with a name a template uses.
#[derive(Clone, Copy)]
enum Kind {
    Filter,
    Test,
    Function,
    /// A declared secret's name used bare (`db.password`, not `secrets.db.password`).
    SecretUsedBare,
    /// `secrets.<name>` or `secrets['<name>']` of a secret not declared.
    Undeclared,
}

/// What [`check`] found in one template, with the place of each first use. The
/// messages are written only for the problems shown (see [`MAX_TEMPLATE_PROBLEMS`]):
/// a template full of unknown names costs no more than one suggestion per problem
/// shown.
#[derive(Default)]
struct Found {
    /// Bare names that are not variables of the template, in order of first use. Only
    /// when there is no same-named secret whose fields they could be.
    bare: Vec<(Place, String)>,
    /// Every other problem: what kind, and the name it is about.
    other: Vec<(Place, Kind, String)>,
    /// The template's file name (and the secret whose fields are top-level names).
    name: String,
}

/// The names `tmpl` leaves undeclared: top-level ones that are not globals, and the
/// secrets named as `secrets.<name>` that are not declared.
fn undeclared(
    env: &Environment<'_>,
    tmpl: &minijinja::Template<'_, '_>,
    declared: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let globals: BTreeSet<&str> = env.globals().map(|(k, _)| k).collect();
    let mut top = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for var in tmpl.undeclared_variables(true) {
        let mut parts = var.splitn(3, '.');
        let first = parts.next().unwrap_or_default();
        if first == "secrets" {
            if let Some(secret) = parts.next()
                && !declared.contains(secret)
            {
                secrets.insert(secret.to_string());
            }
        } else if !globals.contains(first) {
            top.insert(first.to_string());
        }
    }
    (top, secrets)
}

impl Found {
    /// One pass over the compiled instructions (a flat list: no recursion), checked
    /// against the names the template leaves undeclared (which knows the scopes of
    /// `set`, `for` and `loop`).
    fn collect(
        env: &Environment<'_>,
        tmpl: &minijinja::Template<'_, '_>,
        name: &str,
        declared: &BTreeSet<String>,
    ) -> Found {
        use minijinja::ErrorKind;
        use minijinja::machinery::Instruction as I;
        let has_own = declared.contains(name);
        let (top, secrets) = undeclared(env, tmpl, declared);
        let state = env.empty_state();
        let instructions = &minijinja::machinery::get_compiled_template(tmpl).instructions;
        let at = |i: usize| instructions.get(i as u32);
        let line = |i: usize| (instructions.get_line(i as u32), i);
        let mut found = Found {
            name: name.to_string(),
            ..Found::default()
        };
        // Each name is reported once, at its first use.
        let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
        let mut called: BTreeSet<&str> = BTreeSet::new();
        let mut first = |kind: &'static str, name: &str| seen.insert((kind, name.to_string()));
        for i in 0..instructions.len() {
            match at(i) {
                Some(I::ApplyFilter(filter, ..)) => {
                    let probe = state.apply_filter(filter, &[]);
                    if probe.is_err_and(|e| e.kind() == ErrorKind::UnknownFilter)
                        && first("filter", filter)
                    {
                        found
                            .other
                            .push((line(i), Kind::Filter, filter.to_string()));
                    }
                }
                Some(I::PerformTest(test, ..)) => {
                    let probe = state.perform_test(test, &[]);
                    if probe.is_err_and(|e| e.kind() == ErrorKind::UnknownTest)
                        && first("test", test)
                    {
                        found.other.push((line(i), Kind::Test, test.to_string()));
                    }
                }
                Some(I::CallFunction(function, ..))
                    if top.contains(*function) && first("function", function) =>
                {
                    called.insert(function);
                    found
                        .other
                        .push((line(i), Kind::Function, function.to_string()));
                }
                Some(I::Lookup(var)) if top.contains(*var) && !has_own && first("name", var) => {
                    found.push_bare(line(i), var, declared);
                }
                Some(I::GetAttr(secret)) if i >= 1 => {
                    if let Some(I::Lookup("secrets")) = at(i - 1)
                        && secrets.contains(*secret)
                        && first("secret", secret)
                    {
                        found
                            .other
                            .push((line(i), Kind::Undeclared, secret.to_string()));
                    }
                }
                Some(I::GetItem) if i >= 2 => {
                    if let (Some(I::Lookup("secrets")), Some(I::LoadConst(key))) =
                        (at(i - 2), at(i - 1))
                        && let Some(secret) = key.as_str()
                        && !declared.contains(secret)
                        && first("secret", secret)
                    {
                        found
                            .other
                            .push((line(i), Kind::Undeclared, secret.to_string()));
                    }
                }
                _ => {}
            }
        }
        // A name the walk did not place (none expected): reported without a line.
        let unplaced = (None, usize::MAX);
        for var in top
            .iter()
            .filter(|v| !has_own && !called.contains(v.as_str()))
        {
            if first("name", var) {
                found.push_bare(unplaced, var, declared);
            }
        }
        for secret in secrets.iter().filter(|s| first("secret", s)) {
            found
                .other
                .push((unplaced, Kind::Undeclared, secret.clone()));
        }
        found
    }

    /// A bare name: a declared secret's used without `secrets.`, or an unknown one.
    fn push_bare(&mut self, place: Place, var: &str, declared: &BTreeSet<String>) {
        if declared.contains(var) {
            self.other
                .push((place, Kind::SecretUsedBare, var.to_string()));
        } else {
            self.bare.push((place, var.to_string()));
        }
    }

    /// The messages, in the order of the template's lines, at most `limit` of them and
    /// then how many more; with `multiline`, each says its line.
    fn messages(self, multiline: bool, declared: &BTreeSet<String>, limit: usize) -> Vec<String> {
        let at = |(line, _): Place| match line {
            Some(n) if multiline => format!(" (line {n})"),
            _ => String::new(),
        };
        // `None`: the bare names' one message, at the place of the first.
        let mut order: Vec<(Place, Option<(Kind, String)>)> = self
            .other
            .into_iter()
            .map(|(place, kind, name)| (place, Some((kind, name))))
            .collect();
        if let Some((place, _)) = self.bare.first() {
            order.push((*place, None));
        }
        order.sort_by_key(|(place, _)| *place);
        let more = order.len().saturating_sub(limit);
        order.truncate(limit);
        let mut out: Vec<String> = order
            .into_iter()
            .map(|(place, problem)| match problem {
                Some((kind, name)) => {
                    let message = match kind {
                        Kind::Filter => unknown_filter(&name),
                        Kind::Test => unknown_test(&name),
                        Kind::Function => unknown_function(&name),
                        Kind::SecretUsedBare => format!(
                            "`{name}` is not defined: declared secrets are reached through `secrets`; write `secrets.{name}` (or `secrets['{name}']`)"
                        ),
                        Kind::Undeclared => undeclared_message(&name, declared),
                    };
                    format!("{message}{}", at(place))
                }
                None => bare_message(&self.name, &self.bare, at),
            })
            .collect();
        if more > 0 {
            out.push(format!(
                "… and {more} more problems in this template; fix these and check it again"
            ));
        }
        out
    }
}

/// One message for the bare names of a template without a same-named secret: they
/// share one fix.
fn bare_message(file: &str, bare: &[(Place, String)], at: impl Fn(Place) -> String) -> String {
    let names: Vec<String> = bare
        .iter()
        .map(|(p, n)| format!("`{n}`{}", at(*p)))
        .collect();
    let (names, verb, it) = match names.as_slice() {
        [init @ .., last] if !init.is_empty() => {
            (format!("{} and {last}", init.join(", ")), "are", "they")
        }
        _ => (names.concat(), "is", "it"),
    };
    let example = bare.first().map_or("password", |(_, n)| n.as_str());
    format!(
        "{names} {verb} not defined: there is no `secret-injector.io/secret-{file}` whose fields {it} could be; declare that secret, or write `secrets.<name>.{example}` for a declared secret"
    )
}

fn unknown_filter(filter: &str) -> String {
    let lower = filter.to_ascii_lowercase();
    let fix = match closest(filter, FILTERS.split_whitespace()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if lower.contains("b64") || lower.contains("base64") => format!(
            "templates have no base64 filter: a file gets the value as the store holds it, so store the value in the form the file needs and remove `| {filter}`"
        ),
        None => "use a builtin filter (such as `upper`, `lower`, `default`, `replace`, `join`, `tojson`, `urlencode`); templates have no others".to_string(),
    };
    format!("the template uses an unknown filter `{filter}`; {fix}")
}

fn unknown_test(test: &str) -> String {
    let fix = match closest(test, TESTS.split_whitespace()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "use a builtin test (such as `defined`, `none`, `string`, `number`, `mapping`)"
            .to_string(),
    };
    format!("the template uses an unknown test `{test}`; {fix}")
}

fn unknown_function(function: &str) -> String {
    let hint = closest(function, GLOBALS_HINT.split(", "))
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    format!(
        "the template calls an unknown function `{function}`; {hint}templates can call only {GLOBALS_HINT}, and cannot read the environment or files"
    )
}

/// The closest candidate, for typos only: names here are short, and a looser match
/// suggests another filter altogether (`b64encode` is three edits from `urlencode`).
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 4).clamp(1, 2);
    crate::reference::closest(word, candidates)
        .filter(|c| strsim::damerau_levenshtein(word, c) <= limit)
}

fn undeclared_message(missing: &str, declared: &BTreeSet<String>) -> String {
    let known = if declared.is_empty() {
        "none is declared".to_string()
    } else {
        format!(
            "declared: {}",
            crate::reference::short_list(declared.iter().map(String::as_str))
        )
    };
    let fix = match closest(missing, declared.iter().map(String::as_str)) {
        Some(c) => {
            format!("did you mean `{c}`? Or add `secret-injector.io/secret-{missing}: <ref>`")
        }
        None => format!("add `secret-injector.io/secret-{missing}: <ref>`"),
    };
    format!("the template names secret `{missing}`, which is not declared ({known}); {fix}")
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

    /// [`super::check`] with its problems on one line each.
    fn check(name: &str, src: &str, declared: &BTreeSet<String>) -> Result<(), String> {
        super::check(name, src, declared).map_err(|problems| problems.join("\n"))
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
        // A call is a call whether or not the template has a same-named secret.
        let m = check("config", "{% if false %}{{ env('HOME') }}{% endif %}", &d).unwrap_err();
        assert!(m.contains("unknown function `env`"), "{m}");
        assert!(!m.contains("not defined"), "{m}");
        let own = declared(&["config"]);
        let m = check("config", "{% if false %}{{ env('HOME') }}{% endif %}", &own).unwrap_err();
        assert!(m.contains("unknown function `env`"), "{m}");
        let m = check("config", "{{ rnage(3) }}", &own).unwrap_err();
        assert!(m.contains("did you mean `range`?"), "{m}");
        // A recursive loop's `loop(…)` is the template's own function (macros are not
        // compiled in: `{% macro %}` does not parse).
        for names in [&d, &own] {
            check(
                "config",
                "{% for k in [[1]] recursive %}{{ loop(k) if k is sequence }}{% endfor %}",
                names,
            )
            .unwrap();
        }
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
        // The parser stops at the first syntax error: that one alone, saying so.
        let both = "{{ secrets.nope.x | b64encode }}\n{% if x %}";
        let e = super::check("f", both, &declared(&["db"])).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("(line 2)") && e[0].contains("checked once it parses"),
            "{e:?}"
        );
    }

    /// Issue 26: an undeclared name, an unknown filter and an unknown test beside each
    /// other are reported together, each with its fix, in the order of their lines.
    #[test]
    fn check_reports_every_problem_of_a_template() {
        let d = declared(&["db"]);
        let src = "user: {{ secrets.db.username }}\npassword: {{ secrets.api.password | b64encode }}\n{% if secrets.db.port is nmber %}port: {{ secrets.db.port }}{% endif %}\n";
        let e = super::check("config.yaml", src, &d).unwrap_err();
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            e[0].starts_with(
                "the template names secret `api`, which is not declared (declared: db)"
            ) && e[0].contains("add `secret-injector.io/secret-api: <ref>`")
                && e[0].ends_with("(line 2)"),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with(
                "the template uses an unknown filter `b64encode`; templates have no base64 filter"
            ) && e[1].ends_with("(line 2)"),
            "{e:#?}"
        );
        assert_eq!(
            e[2],
            "the template uses an unknown test `nmber`; did you mean `number`? (line 3)"
        );
        // One line: no line numbers; each name once however often it is used; bare
        // names of a template without a same-named secret share one message.
        let src = "{{ user }}:{{ password | uper | uper }}@{{ host is strng }}{{ secrets.bd.x }}{{ secrets['bd'].y }}{{ db.x }}";
        let e = super::check("dsn", src, &d).unwrap_err();
        assert_eq!(
            e,
            [
                "`user`, `password` and `host` are not defined: there is no `secret-injector.io/secret-dsn` whose fields they could be; declare that secret, or write `secrets.<name>.user` for a declared secret",
                "the template uses an unknown filter `uper`; did you mean `upper`?",
                "the template uses an unknown test `strng`; did you mean `string`?",
                "the template names secret `bd`, which is not declared (declared: db); did you mean `db`? Or add `secret-injector.io/secret-bd: <ref>`",
                "`db` is not defined: declared secrets are reached through `secrets`; write `secrets.db` (or `secrets['db']`)",
            ]
        );
        // Bounded however many problems: the first 20, then a count.
        let many: String = (0..30)
            .map(|i| format!("{{{{ x | nosuch{i} }}}}\n"))
            .collect();
        let e = super::check("x", &many, &declared(&["x"])).unwrap_err();
        assert_eq!(e.len(), 21, "{e:#?}");
        assert!(
            e[0].contains("`nosuch0`") && e[0].ends_with("(line 1)"),
            "{e:#?}"
        );
        assert_eq!(
            e[20],
            "… and 10 more problems in this template; fix these and check it again"
        );
    }

    /// The suggestion lists name only filters and tests the environment has.
    #[test]
    fn suggested_filters_and_tests_exist() {
        let env = environment();
        let state = env.empty_state();
        for f in FILTERS.split_whitespace() {
            let probe = state.apply_filter(f, &[]);
            assert!(
                !probe.is_err_and(|e| e.kind() == minijinja::ErrorKind::UnknownFilter),
                "{f}"
            );
        }
        for t in TESTS.split_whitespace() {
            let probe = state.perform_test(t, &[]);
            assert!(
                !probe.is_err_and(|e| e.kind() == minijinja::ErrorKind::UnknownTest),
                "{t}"
            );
        }
        let globals: Vec<&str> = env.globals().map(|(k, _)| k).collect();
        assert_eq!(globals.join(", "), GLOBALS_HINT);
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
