//! `inject -f`: the webhook's mutation applied offline to manifests.
//!
//! Multi-document YAML or JSON in, YAML out. Pod templates of Pods, Deployments,
//! StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs (and
//! `List` items) go through exactly the code the webhook runs; other kinds pass through.
//! ServiceAccounts in the same input supply `eks.amazonaws.com/role-arn`, as the
//! webhook's cache would in a cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::mutation::pod::PodView;
use crate::mutation::spec::Context;
use crate::mutation::{Outcome, mutate};

pub use crate::mutation::spec::ROLE_ARN_ANNOTATION;

/// What `inject` produced.
#[derive(Debug, Default)]
pub struct Report {
    pub yaml: String,
    pub injected: usize,
    pub warnings: Vec<String>,
}

/// Where a kind keeps its pod template.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Parse every document of `input` (YAML or JSON). Empty documents are dropped.
pub fn parse_documents(input: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(input).enumerate() {
        let v = Value::deserialize(de).map_err(|e| {
            let hint = e
                .location()
                .and_then(|l| input.lines().nth(l.line().saturating_sub(1)))
                .and_then(quote_hint)
                .unwrap_or_default();
            format!("document {}: {e}{hint}", i + 1)
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// When a YAML error is on a line of ours (`secret-injector.io/secret-db: aws: prod/db`),
/// the fix: the line to write instead, with the value quoted. YAML needs the quotes
/// because of the `: ` in the value, and a reference needs the space after its provider
/// gone (`aws:prod/db`: inside quotes the space would be part of the secret's name), so
/// the line shown is one that then passes.
fn quote_hint(line: &str) -> Option<String> {
    let (key, value) = line.trim().split_once(": ")?;
    let key = key.trim_matches(['"', '\'']);
    let value = value.trim();
    let suffix = key.strip_prefix(crate::mutation::spec::PREFIX)?;
    // Quotes help only with what YAML reads as structure: `: ` inside, or an indicator
    // in front.
    // (Not `|` or `>`: a block scalar's error is in its block, not in want of quotes.)
    let indicator = value.starts_with(['[', '{', '*', '%', '@', '`']);
    if !(value.contains(": ") || indicator) || value.starts_with(['"', '\'']) {
        return None;
    }
    let instead = |v: &str| format!("Write this line instead: {key}: {}", yaml_quoted(v));
    if !is_reference_key(suffix) {
        return Some(format!(
            "; the value of {key} must be quoted. {}",
            instead(value)
        ));
    }
    let written: Vec<&str> = if suffix == "env-from" {
        value.split(',').map(str::trim).collect()
    } else {
        vec![value]
    };
    let fixed: Vec<String> = written.iter().map(|r| unspaced(r)).collect();
    let space = written
        .iter()
        .zip(&fixed)
        .find(|(w, f)| w != f)
        .and_then(|(_, f)| f.split_once(':'))
        .map(|(provider, _)| {
            format!(", without the space after `{provider}:` (inside the quotes it would be part of the name)")
        })
        .unwrap_or_default();
    // Still wrong once quoted: say so, rather than promise that the line passes.
    let then = fixed
        .iter()
        .find_map(|r| contract::reference::parse(r).err())
        .map(|e| format!("; then fix the reference: {e}"))
        .unwrap_or_default();
    Some(format!(
        "; the value of {key} must be quoted{space}. {}{then}",
        instead(&fixed.join(","))
    ))
}

/// Annotations whose value is a reference (`env-from`: a list of them).
fn is_reference_key(suffix: &str) -> bool {
    suffix.starts_with("secret-") || (suffix.starts_with("env-") && suffix != "env-from-allow")
}

/// `aws: prod/db` as `aws:prod/db`: a provider is a word, and nothing separates it from
/// its path.
fn unspaced(reference: &str) -> String {
    match reference.split_once(':') {
        Some((provider, rest))
            if !provider.is_empty() && provider.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("{provider}:{}", rest.trim_start())
        }
        _ => reference.to_string(),
    }
}

/// `s` as a YAML scalar that reads back as the string `s`: single-quoted when that
/// needs no escape and avoids escaping `"` (a JSON array for `command`), else
/// double-quoted with JSON escapes, which YAML reads the same way.
fn yaml_quoted(s: &str) -> String {
    if s.contains('"') && !s.contains('\'') && !s.chars().any(char::is_control) {
        format!("'{s}'")
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// Why `inject` wrote nothing: every problem, and the warnings found on the way (a
/// misplaced annotation may be the cause of a problem elsewhere).
#[derive(Debug)]
pub struct Denied {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Inject every workload in `input`. On any invalid annotation, returns all messages.
pub fn inject(input: &str, config: &Config) -> Result<Report, Denied> {
    let mut docs = parse_documents(input).map_err(|e| Denied {
        problems: vec![e],
        warnings: Vec::new(),
    })?;
    let mut accounts = BTreeMap::new();
    for doc in &docs {
        collect_service_accounts(doc, &mut accounts);
    }
    let mut report = Report::default();
    let mut problems = Vec::new();
    for doc in &mut docs {
        inject_doc(doc, config, &accounts, &mut report, &mut problems);
    }
    if !problems.is_empty() {
        return Err(Denied {
            problems,
            warnings: report.warnings,
        });
    }
    let mut yaml = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            yaml.push_str("---\n");
        }
        yaml.push_str(&to_yaml(doc));
    }
    report.yaml = yaml;
    Ok(report)
}

fn collect_service_accounts(doc: &Value, out: &mut BTreeMap<(String, String), Context>) {
    match str_at(doc, "/kind") {
        "List" => {
            for item in doc["items"].as_array().into_iter().flatten() {
                collect_service_accounts(item, out);
            }
        }
        "ServiceAccount" => {
            let annotations = doc.pointer("/metadata/annotations");
            let ctx = Context::from_service_account(|name| {
                annotations
                    .and_then(|a| a.get(name))
                    .and_then(Value::as_str)
            });
            if ctx != Context::default() {
                let ns = match str_at(doc, "/metadata/namespace") {
                    "" => "default",
                    ns => ns,
                };
                out.insert(
                    (ns.to_string(), str_at(doc, "/metadata/name").to_string()),
                    ctx,
                );
            }
        }
        _ => {}
    }
}

fn inject_doc(
    doc: &mut Value,
    config: &Config,
    accounts: &BTreeMap<(String, String), Context>,
    report: &mut Report,
    problems: &mut Vec<String>,
) {
    let kind = str_at(doc, "/kind").to_string();
    if kind == "List" {
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                inject_doc(item, config, accounts, report, problems);
            }
        }
        return;
    }
    let Some(ptr) = template_pointer(&kind) else {
        return;
    };
    let name = format!("{kind}/{}", str_at(doc, "/metadata/name"));
    report
        .warnings
        .extend(misplaced_annotations(doc, &name, ptr));
    let namespace = match str_at(doc, "/metadata/namespace") {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    let Some(template) = doc.pointer_mut(ptr) else {
        problems.push(format!("{name}: has no pod template at {ptr}"));
        return;
    };
    if let Some(Value::Object(annotations)) = template.pointer("/metadata/annotations") {
        let mut bad = false;
        for (k, v) in annotations {
            match v {
                Value::String(_) => continue,
                // `key:` with nothing after it, `~` or `null`
                Value::Null => problems.push(format!(
                    "{name}: annotation {k} has no value (YAML reads it as null); write the value in quotes, or remove the annotation"
                )),
                _ => problems.push(format!(
                    "{name}: annotation {k} is {v}, not a string; quote it, for example {k}: {}",
                    yaml_quoted(&v.to_string())
                )),
            }
            bad = true;
        }
        if bad {
            return;
        }
    }
    let pod: PodView = match serde_json::from_value(template.clone()) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{name}: cannot read the pod template: {e}"));
            return;
        }
    };
    let ctx = accounts
        .get(&(namespace, pod.service_account().to_string()))
        .cloned()
        .unwrap_or_default();
    match mutate(&pod, config, &ctx) {
        Outcome::Skipped(_) => {}
        Outcome::Injected { patch, warnings } => {
            if let Err(e) = json_patch::patch(template, &patch.to_json_patch()) {
                problems.push(format!("{name}: internal error applying the patch: {e}"));
                return;
            }
            report.injected += 1;
            report
                .warnings
                .extend(warnings.into_iter().map(|w| format!("{name}: {w}")));
        }
        Outcome::Denied(p) => problems.push(format!("{name}: {p}")),
    }
}

/// Our annotations on a workload's own metadata, where nothing reads them: the webhook
/// sees only pods, made from the pod template. The most common mistake with
/// annotation-driven injectors, so it gets a warning naming the place to move them to.
fn misplaced_annotations(doc: &Value, name: &str, template: &str) -> Vec<String> {
    if template.is_empty() {
        return Vec::new();
    }
    let target =
        format!("{}/metadata/annotations", template.trim_start_matches('/')).replace('/', ".");
    let kind = name.split('/').next().unwrap_or("workload");
    // The workload's own metadata, and a CronJob's Job template's.
    let places = [
        (
            "/metadata/annotations",
            format!("the {kind}'s own metadata"),
        ),
        (
            "/spec/jobTemplate/metadata/annotations",
            "the Job template's metadata".to_string(),
        ),
    ];
    let mut out = Vec::new();
    for (ptr, place) in places {
        let Some(Value::Object(annotations)) = doc.pointer(ptr) else {
            continue;
        };
        out.extend(
            annotations
                .keys()
                .filter(|k| k.starts_with(crate::mutation::spec::PREFIX))
                .map(|k| {
                    format!(
                        "{name}: {k} is on {place}, which the webhook never sees (it reads pods, made from the pod template); move it to {target}"
                    )
                }),
        );
    }
    out
}

/// Block-style YAML for Kubernetes manifests. Strings are written plain only when no
/// YAML 1.1 or 1.2 reader (kubectl, PyYAML, Go yaml) can take them for anything else;
/// otherwise they are double-quoted with JSON escapes, which YAML reads the same way.
/// (Generic emitters write `yes`, `on` or `0777` plain, which YAML 1.1 readers turn
/// into booleans and numbers.)
pub fn to_yaml(doc: &Value) -> String {
    let mut out = String::new();
    match doc {
        Value::Object(m) if !m.is_empty() => emit_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => emit_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn plain_is_safe(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let first = s.chars().next();
    !s.is_empty()
        && s.len() <= 200
        && first.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./@+=,".contains(c))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str())
        && !s.ends_with(':')
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if plain_is_safe(s) => s.clone(),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

fn key(k: &str) -> String {
    if plain_is_safe(k) {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn emit_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (i, (k, v)) in m.iter().enumerate() {
        // the first key of a sequence item follows its "- "
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&pad);
        }
        out.push_str(&key(k));
        out.push(':');
        match v {
            Value::Object(child) if !child.is_empty() => {
                out.push('\n');
                emit_map(out, child, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                emit_seq(out, items, indent);
            }
            _ => {
                out.push(' ');
                out.push_str(&scalar(v));
                out.push('\n');
            }
        }
    }
}

fn emit_seq(out: &mut String, items: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map(out, m, indent + 2),
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_seq(out, a, indent + 2);
            }
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_ambiguous_strings_strings() {
        let doc = serde_json::json!({
            "metadata": {"annotations": {"a": "on", "b": "yes", "c": "0777", "d": "1_000", "e": "", "f": "x: y", "g": "line1\nline2", "h": "N", "i": "plain-value/ok"}},
            "spec": {"containers": [{"name": "c", "args": ["--x", "no", "~"], "env": [{"name": "A", "value": "true"}]}], "empty": {}, "list": [], "n": 3, "t": true, "z": null, "nested": [[1, 2], []]},
        });
        let text = to_yaml(&doc);
        for quoted in [
            "\"on\"",
            "\"yes\"",
            "\"0777\"",
            "\"1_000\"",
            "\"\"",
            "\"N\"",
            "\"no\"",
            "\"~\"",
            "\"true\"",
        ] {
            assert!(text.contains(quoted), "{quoted} not quoted in\n{text}");
        }
        assert!(text.contains("i: plain-value/ok"), "{text}");
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, doc, "{text}");
    }

    const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
      annotations:
        secret-injector.io/secret-db: "vault:secret/data/prod/db#password"
    spec:
      containers: [{name: api, image: "api:1"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
"#;

    #[test]
    fn injects_templates_and_passes_other_kinds_through() {
        let r = inject(DEPLOY, &Config::default()).unwrap();
        assert_eq!(r.injected, 1);
        let docs = parse_documents(&r.yaml).unwrap();
        assert_eq!(docs.len(), 2);
        let tpl = &docs[0]["spec"]["template"];
        assert_eq!(
            tpl["spec"]["initContainers"][0]["name"],
            "secret-injector-init"
        );
        assert_eq!(docs[1]["data"]["a"], "b");
        // a second pass changes nothing
        let again = inject(&r.yaml, &Config::default()).unwrap();
        assert_eq!(again.yaml, r.yaml);
        assert_eq!(again.injected, 0);
    }

    #[test]
    fn cronjob_templates_and_lists() {
        let input = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"metadata":{"annotations":{"secret-injector.io/secret-x":"aws:a/b"}},"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"c"}]}}}}}}]}"#;
        let r = inject(input, &Config::default()).unwrap();
        assert_eq!(r.injected, 1);
        let doc = &parse_documents(&r.yaml).unwrap()[0];
        assert_eq!(
            doc["items"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]
                ["name"],
            "secret-injector-init"
        );
    }

    #[test]
    fn reports_every_bad_workload() {
        let bad = DEPLOY.replace("vault:secret", "vualt:secret");
        let two = format!(
            "{bad}\n---\n{}",
            bad.replace("name: api, namespace", "name: api2, namespace")
        );
        let e = inject(&two, &Config::default()).unwrap_err().problems;
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("Deployment/api: "), "{}", e[0]);
        assert!(e[0].contains("secret-injector.io/secret-db"));
    }

    #[test]
    fn service_account_in_the_input_gives_the_role() {
        let input = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: prod, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/app"}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: prod, annotations: {secret-injector.io/secret-x: "aws:prod/x#k"}}
spec: {serviceAccountName: app, containers: [{name: c, image: c}]}
"#;
        let r = inject(input, &Config::default()).unwrap();
        assert!(r.yaml.contains("arn:aws:iam::123456789012:role/app"));
        assert!(r.yaml.contains("secret-injector-token-aws"));
    }

    /// Our annotations on a Deployment's own metadata: warned about, naming the place to
    /// move them to; on a Pod's metadata they are where they belong.
    #[test]
    fn annotations_on_the_workloads_own_metadata_are_warned_about() {
        let input = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  annotations:
    secret-injector.io/secret-db: "vault:kv/db#password"
    deployment.kubernetes.io/revision: "3"
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers: [{name: app, image: app}]
"#;
        let report = inject(input, &Config::default()).unwrap();
        assert_eq!(report.injected, 0);
        assert_eq!(
            report.warnings,
            [
                "Deployment/app: secret-injector.io/secret-db is on the Deployment's own metadata, which the webhook never sees (it reads pods, made from the pod template); move it to spec.template.metadata.annotations"
            ]
        );
        let cron = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  annotations: {secret-injector.io/secret-db: "vault:kv/db"}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: app, image: app}]
"#;
        let report = inject(cron, &Config::default()).unwrap();
        assert!(
            report.warnings[0]
                .contains("move it to spec.jobTemplate.spec.template.metadata.annotations"),
            "{:?}",
            report.warnings
        );
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-injector.io/secret-db: vault:kv/db\nspec:\n  containers: [{name: app, image: app}]\n";
        let report = inject(pod, &Config::default()).unwrap();
        assert_eq!(report.injected, 1);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    /// The line a YAML error's hint says to write instead.
    fn hinted_line(error: &str) -> &str {
        let (_, line) = error
            .split_once("Write this line instead: ")
            .unwrap_or_else(|| panic!("no line to write in: {error}"));
        line.split("; then fix").next().unwrap()
    }

    /// An unquoted value with `: ` in it breaks the YAML; on one of our annotations the
    /// error gives the line to write instead, quoted and, for a reference, without the
    /// space after the provider (issue 26: `"aws: prod/db"` made the space part of the
    /// name). That line, put in place of the bad one, passes.
    #[test]
    fn a_yaml_error_on_our_annotation_gives_a_line_that_passes() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-injector.io/secret-db: aws: prod/db\nspec:\n  containers: [{name: app, image: app}]\n";
        let e = parse_documents(input).unwrap_err();
        assert!(e.starts_with("document 1: "), "{e}");
        assert!(
            e.ends_with("; the value of secret-injector.io/secret-db must be quoted, without the space after `aws:` (inside the quotes it would be part of the name). Write this line instead: secret-injector.io/secret-db: \"aws:prod/db\""),
            "{e}"
        );
        // not ours: no hint
        let other = input.replace("secret-injector.io/secret-db", "example.com/x");
        assert!(
            !parse_documents(&other)
                .unwrap_err()
                .contains("must be quoted")
        );
        // Each written line, its hint put in its place, is injected.
        for (bad, want) in [
            (
                "secret-injector.io/secret-db: aws: prod/db",
                "secret-injector.io/secret-db: \"aws:prod/db\"",
            ),
            (
                "\"secret-injector.io/secret-db\": vault:   kv/db#password",
                "secret-injector.io/secret-db: \"vault:kv/db#password\"",
            ),
            (
                "secret-injector.io/env-from: aws: prod/app, ssm: /prod/app/",
                "secret-injector.io/env-from: \"aws:prod/app,ssm:/prod/app/\"",
            ),
            (
                "secret-injector.io/template-config.yaml: 'user: {{ secrets.db.username }}'\n    secret-injector.io/secret-db: vault: kv/db",
                "secret-injector.io/secret-db: \"vault:kv/db\"",
            ),
            (
                "secret-injector.io/secret-db: vault:kv/db\n    secret-injector.io/template-config.yaml: user: {{ secrets.db.username }}",
                "secret-injector.io/template-config.yaml: \"user: {{ secrets.db.username }}\"",
            ),
        ] {
            let pod = format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    {bad}\nspec:\n  containers: [{{name: app, image: app, command: [/app]}}]\n"
            );
            let e = parse_documents(&pod).unwrap_err();
            let line = hinted_line(&e);
            assert_eq!(line, want, "{e}");
            let bad_line = bad.lines().find(|l| quote_hint(l).is_some()).unwrap();
            let fixed = pod.replace(bad_line.trim(), line);
            let report = inject(&fixed, &Config::default())
                .unwrap_or_else(|d| panic!("{fixed}\n{:?}", d.problems));
            assert_eq!(report.injected, 1, "{fixed}");
        }
        // A reference still wrong once quoted: the hint says what else to fix.
        let e = parse_documents(&input.replace("prod/db", "prod db")).unwrap_err();
        assert!(
            e.contains("secret-injector.io/secret-db: \"aws:prod db\"; then fix the reference: the AWS secret name `prod db` contains ' '"),
            "{e}"
        );
    }

    /// A value YAML reads as something else than a string: the example to write is
    /// valid YAML that reads back as a string.
    #[test]
    fn values_that_are_not_strings_get_a_quoted_example_that_passes() {
        let pod = |value: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-injector.io/secret-db: vault:kv/db\n    secret-injector.io/command: {value}\nspec:\n  containers: [{{name: app, image: app}}]\n"
            )
        };
        let e = inject(&pod("[\"/app\", \"--port\", 8080]"), &Config::default())
            .unwrap_err()
            .problems;
        let (_, example) = e[0].split_once("for example ").unwrap();
        assert_eq!(
            example, "secret-injector.io/command: '[\"/app\",\"--port\",8080]'",
            "{e:?}"
        );
        // That is not yet a valid command (8080 is a number), but it is a string:
        // the next run names the annotation's own problem.
        let e = inject(
            &pod(example.split_once(": ").unwrap().1),
            &Config::default(),
        )
        .unwrap_err()
        .problems;
        assert!(e[0].contains("secret-injector.io/command: "), "{e:?}");
        let r = inject(&pod("'[\"/app\"]'"), &Config::default()).unwrap();
        assert_eq!(r.injected, 1);
        let e = inject(&pod(""), &Config::default()).unwrap_err().problems;
        assert!(
            e[0].contains("secret-injector.io/command has no value"),
            "{e:?}"
        );
    }

    /// A CronJob's Job template metadata is no place for them either; and the warning
    /// survives a problem elsewhere in the input, where it may be the explanation.
    #[test]
    fn misplaced_annotations_in_a_job_template_and_beside_a_problem() {
        let cron = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    metadata:
      annotations: {secret-injector.io/secret-db: "vault:kv/db"}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: app, image: app}]
"#;
        let report = inject(cron, &Config::default()).unwrap();
        assert!(
            report.warnings.len() == 1
                && report.warnings[0].contains("is on the Job template's metadata"),
            "{:?}",
            report.warnings
        );
        let bad_pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-injector.io/secert-db: vault:kv/db\nspec:\n  containers: [{name: app, image: app}]\n";
        let both = format!("{cron}\n---\n{bad_pod}");
        let denied = inject(&both, &Config::default()).unwrap_err();
        assert_eq!(denied.problems.len(), 1, "{denied:?}");
        assert_eq!(denied.warnings.len(), 1, "{denied:?}");
    }
}
