//! The command line as a user runs it.

use crate::util::{self, run};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn inject_reports_every_bad_annotation_and_prints_nothing() {
    let input = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
      annotations:
        secret-injector.io/secret-db: "vault:"
        secret-injector.io/template-cfg: "{{ secrets.nope.x }}"
        secret-injector.io/mount-path: "secrets"
    spec:
      containers: [{name: api, image: api}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata:
      annotations:
        secret-injector.io/env-DB_PASSWORD: "aws:prod/db#password"
    spec:
      restartPolicy: Never
      containers: [{name: m, image: m, args: [up]}]
"#;
    let out = run(&["inject", "-f", "-"], Some(input));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "stdout must be empty on error");
    let err = stderr(&out);
    for needle in [
        "Deployment/api",
        "secret-injector.io/secret-db: the path is empty",
        "secret-injector.io/template-cfg",
        "secret-injector.io/mount-path",
        "Job/migrate",
        "secret-injector.io/env-DB_PASSWORD",
        "secret-injector.io/command",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn inject_is_idempotent_on_examples_and_passes_other_kinds() {
    for entry in std::fs::read_dir(util::repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let out = run(&["inject", "-f", path.to_str().unwrap()], None);
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        let first = String::from_utf8(out.stdout).unwrap();
        assert!(
            first.contains("secret-injector-init") || first.contains("secret-injector-refresh"),
            "{}",
            path.display()
        );
        let again = run(&["inject", "-f", "-"], Some(&first));
        assert!(again.status.success());
        assert_eq!(
            String::from_utf8(again.stdout).unwrap(),
            first,
            "{}",
            path.display()
        );
        // Every non-workload document passes through unchanged.
        let before = util::fixture_docs(path.strip_prefix(util::repo()).unwrap().to_str().unwrap());
        let after = webhook::inject::parse_documents(&first).unwrap();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            if matches!(
                b["kind"].as_str(),
                Some("Namespace" | "ServiceAccount" | "ConfigMap" | "Service")
            ) {
                assert_eq!(a, b);
            }
        }
    }
}

#[test]
fn inject_reads_json_and_reports_parse_errors() {
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"secret-injector.io/secret-a":"aws:a#k"}},"spec":{"containers":[{"name":"c","image":"c"}]}}"#;
    let out = run(&["inject", "-f", "-"], Some(pod));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret-injector-init"));
    let out = run(&["inject", "-f", "-"], Some("kind: [unclosed"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("document 1"), "{}", stderr(&out));
    let out = run(&["inject", "-f", "/nonexistent.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent.yaml"));
}

#[test]
fn config_file_and_env_reach_the_injected_container() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "image: registry.example/si:9\nvault:\n  address: https://bao.example:8200\n",
    )
    .unwrap();
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"secret-injector.io/secret-a":"vault:kv/a"}},"spec":{"containers":[{"name":"c","image":"c"}]}}"#;
    let out = util::bin()
        .args(["inject", "-f", "-", "--config", cfg.to_str().unwrap()])
        .env("SECRET_INJECTOR_VAULT_AUDIENCE", "bao")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pod.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("registry.example/si:9"), "{text}");
    assert!(text.contains("https://bao.example:8200"), "{text}");
    assert!(text.contains("audience: bao"), "{text}");
}

#[test]
fn certs_writes_a_usable_pair_and_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = util::make_certs(dir.path(), None);
    for f in ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.b64"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca-bundle.b64")).unwrap(),
        bundle
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let cert = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let key = std::fs::read(dir.path().join("tls.key")).unwrap();
    webhook::tls::server_config(&cert, &key).unwrap();
}

#[test]
fn inject_names_an_unquoted_annotation() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    secret-injector.io/inject: false\nspec:\n  containers: [{name: c, image: c}]\n";
    let out = run(&["inject", "-f", "-"], Some(input));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("secret-injector.io/inject is false, not a string")
            && err.contains("\"false\""),
        "{err}"
    );
}

/// `inject -f` output, byte for byte, for every example and workload fixture: what the
/// webhook writes must not change by accident (a refactoring keeps it identical).
/// After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test it golden`
/// and review the diff of tests/fixtures/golden/.
#[test]
fn inject_output_matches_the_golden_files() {
    let repo = util::repo();
    let mut inputs: Vec<std::path::PathBuf> = ["examples", "tests/fixtures/workloads"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10);
    for input in inputs {
        let out = run(&["inject", "-f", input.to_str().unwrap()], None);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            stderr(&out)
        );
        let golden = repo
            .join("tests/fixtures/golden")
            .join(input.file_name().unwrap());
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &out.stdout).unwrap();
            continue;
        }
        let want = std::fs::read(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
        assert!(
            out.stdout == want,
            "inject -f {} differs from {}",
            input.display(),
            golden.display()
        );
    }
}

/// A YAML syntax error names the file, and on one of our annotations gives the line to
/// write instead; written into the file, that line passes (issue 26: the hint used to
/// keep the space of `aws: prod/db`, which then became part of the secret's name).
#[test]
fn a_yaml_syntax_error_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.yaml");
    let bad = "secret-injector.io/secret-db: aws: prod/db";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    {bad}\nspec:\n  containers: [{{name: app, image: app}}]\n"
    );
    std::fs::write(&path, &manifest).unwrap();
    let out = run(&["inject", "-f", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("{}: document 1: ", path.display())),
        "{err}"
    );
    assert!(err.contains("without the space after `aws:`"), "{err}");
    let (_, line) = err
        .trim_end()
        .split_once("Write this line instead: ")
        .unwrap_or_else(|| panic!("no line to write in: {err}"));
    assert_eq!(line, "secret-injector.io/secret-db: \"aws:prod/db\"");
    std::fs::write(&path, manifest.replace(bad, line)).unwrap();
    let out = run(&["inject", "-f", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let injected = String::from_utf8(out.stdout).unwrap();
    assert!(
        injected.contains("secret-injector.io/secret-db: \"aws:prod/db\"")
            && injected.contains("secret-injector-init"),
        "{injected}"
    );
}

/// Issue 26: every problem of a template in one run (an undeclared secret, an unknown
/// filter, an unknown test), each naming the annotation and its fix; and with the
/// template fixed, the pod is injected.
#[test]
fn inject_reports_every_problem_of_a_template_at_once() {
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
      annotations:
        secret-injector.io/secret-db: "vault:secret/data/prod/db"
        secret-injector.io/template-config.yaml: |
          user: {{ secrets.db.username | tojson }}
          api_key: {{ secrets.api.key | b64encode }}
          {% if secrets.db.port is nmber %}port: {{ secrets.db.port }}{% endif %}
    spec:
      containers: [{name: api, image: api}]
"#;
    let out = run(&["inject", "-f", "-"], Some(manifest));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let at = "- secret-injector.io/template-config.yaml: ";
    assert_eq!(
        lines,
        [
            "Deployment/api: 3 problems with the pod's annotations:".to_string(),
            format!(
                "{at}the template names secret `api`, which is not declared (declared: db); add `secret-injector.io/secret-api: <ref>` (line 2)"
            ),
            format!(
                "{at}the template uses an unknown filter `b64encode`; templates have no base64 filter: a file gets the value as the store holds it, so store the value in the form the file needs and remove `| b64encode` (line 2)"
            ),
            format!(
                "{at}the template uses an unknown test `nmber`; did you mean `number`? (line 3)"
            ),
        ],
        "{err}"
    );
    // Each fix applied as the messages say: the pod passes.
    let fixed = manifest
        .replace(
            "secret-injector.io/secret-db:",
            "secret-injector.io/secret-api: \"vault:secret/data/prod/api\"\n        secret-injector.io/secret-db:",
        )
        .replace(" | b64encode", "")
        .replace("is nmber", "is number");
    let out = run(&["inject", "-f", "-"], Some(&fixed));
    assert!(out.status.success(), "{}", stderr(&out));
}
