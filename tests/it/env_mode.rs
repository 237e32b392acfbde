//! The init container's env mode: variables from `env-from` (a whole secret's keys) and
//! `env-<VAR>`, written for the app container's `exec` only, and the loader variables
//! (`LD_PRELOAD`) that `env-from` refuses unless the pod allows them.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::{Value, json};

use crate::fixtures::{
    CNPG_PASSWORD, DB_PASSWORD, InitRun, JWT_SECRET, STATIC_AWS_KEYS, all_values, aws_only_config,
    aws_token, bao_with_secrets, config, deployment, moto_with_secrets, run_injected,
    vault_only_config, vault_token,
};
use crate::support::TokenSigner;
use crate::util::{self, rt};

/// What the wrapped app container runs: the binary that init copied, `exec` with the
/// env file that init wrote, then `command`.
fn exec_with_env_file(run: &InitRun, command: &[&str]) -> Command {
    let env_dir = run.env_dir();
    let mut cmd = Command::new(env_dir.join("bin/secret-injector"));
    cmd.args([
        "exec",
        "--env-file",
        env_dir.join("env.json").to_str().unwrap(),
        "--",
    ])
    .args(command);
    cmd
}

#[test]
fn env_mode_loads_variables_into_the_app_process_only() {
    let rt = rt();
    let signer = TokenSigner::new();
    let (bao, moto) = rt.block_on(async {
        let bao = bao_with_secrets(&signer).await;
        let moto = moto_with_secrets(&[(
            "deparrow/production/secrets",
            &json!({"DEPARROW_JWT_SECRET": JWT_SECRET, "POSTGRES_PASSWORD": CNPG_PASSWORD})
                .to_string(),
        )])
        .await;
        (bao, moto)
    });
    let manifest = deployment(
        &[
            ("env-from", "aws:deparrow/production/secrets"),
            ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
            ("aws-role-arn", "arn:aws:iam::123456789012:role/deparrow"),
        ],
        "app",
    );
    assert!(all_values().iter().all(|v| !manifest.contains(v)));
    let run = run_injected(
        &manifest,
        &config(&bao.addr, &moto.url),
        &[vault_token(&signer, "app"), aws_token(&signer, "app")],
        &[],
    );
    assert!(run.out.status.success(), "{}", run.stderr());
    run.assert_no_values();
    bao.assert_nothing_issued_in(&run.output_text());
    let env_dir = run.env_dir();
    // The wrapper copied for the app container is the small exec-only binary, not
    // the agent (in a release build: about 0.5 MB against 26 MB).
    let copied = std::fs::read(env_dir.join("bin/secret-injector")).unwrap();
    let wrapper = std::path::Path::new(env!("CARGO_BIN_EXE_secret-injector-exec"));
    assert!(
        copied == std::fs::read(wrapper).unwrap(),
        "the copy is not {}",
        wrapper.display()
    );
    let agent = std::fs::metadata(util::AGENT).unwrap().len();
    assert!(
        (copied.len() as u64) < agent,
        "the wrapper ({} bytes) is not smaller than the agent ({agent} bytes)",
        copied.len()
    );
    let mode = std::fs::metadata(env_dir.join("env.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);

    // What the wrapped container runs: exec -- <command>, here /usr/bin/env.
    let out = exec_with_env_file(&run, &["/usr/bin/env"])
        .env_clear()
        .env("KEPT", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(
        env.contains(&format!("DEPARROW_JWT_SECRET={JWT_SECRET}")),
        "env-from key missing"
    );
    assert!(env.contains(&format!("POSTGRES_PASSWORD={CNPG_PASSWORD}")));
    assert!(
        env.contains(&format!("DB_PASSWORD={DB_PASSWORD}")),
        "env-<VAR> missing"
    );
    assert!(env.contains("KEPT=1"), "the container's own env is kept");

    // Exit codes pass through, and a missing program is a clear error.
    let status = exec_with_env_file(&run, &["/bin/sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let out = exec_with_env_file(&run, &["/nonexistent/app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/app"), "{err}");
    assert!(all_values().iter().all(|v| !err.contains(v)));
}

/// `env_delivery: file-key-ref` (Kubernetes 1.35+): the app container keeps its command
/// (here it has none) and gets `fileKeyRef` entries; init writes the kubelet's env file
/// from the real store, and copies no wrapper.
#[test]
fn file_key_ref_writes_the_kubelet_env_file_and_no_wrapper() {
    let rt = rt();
    let signer = TokenSigner::new();
    let bao = rt.block_on(bao_with_secrets(&signer));
    let manifest: Value = serde_json::from_str(&deployment(
        &[
            ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
            ("env-DB_USER", "vault:secret/data/team-a/db#username"),
        ],
        "app",
    ))
    .unwrap();
    let mut manifest = manifest;
    let app = &mut manifest["spec"]["template"]["spec"]["containers"][0];
    app.as_object_mut().unwrap().remove("command");
    let manifest = manifest.to_string();
    let config = format!(
        "{}env_delivery: file-key-ref\n",
        vault_only_config(&bao.addr)
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, &config).unwrap();
    let out = util::run(
        &["inject", "-f", "-", "--config", cfg.to_str().unwrap()],
        Some(&manifest),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let docs = webhook::inject::parse_documents(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let injected = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let app = &injected["spec"]["template"]["spec"]["containers"][0];
    assert!(app.get("command").is_none(), "{app}");
    assert_eq!(
        app["env"][0]["valueFrom"]["fileKeyRef"],
        json!({"volumeName": "secret-injector-env", "path": "vars.env", "key": "DB_PASSWORD"})
    );

    let run = run_injected(&manifest, &config, &[vault_token(&signer, "app")], &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    run.assert_no_values();
    bao.assert_nothing_issued_in(&run.output_text());
    let env_dir = run.env_dir();
    let file = std::fs::read_to_string(env_dir.join("vars.env")).unwrap();
    assert_eq!(
        file,
        format!("DB_PASSWORD='{DB_PASSWORD}'\nDB_USER='app'\n")
    );
    assert!(!env_dir.join("bin").exists(), "no wrapper is copied");
    assert!(!env_dir.join("env.json").exists());
}

/// `env-from` loads the keys a secret's writer chose: a loader variable among them
/// (`LD_PRELOAD`) fails init with one line naming it and the fix, and nothing is
/// written; the pod's `env-from-allow` lets it through.
#[test]
fn env_from_refuses_loader_variables_unless_the_pod_allows_them() {
    const PRELOAD: &str = "/nonexistent/preload-canary-Zq7.so";
    let rt = rt();
    let moto = rt.block_on(moto_with_secrets(&[(
        "team-a/env",
        &json!({"POSTGRES_PASSWORD": CNPG_PASSWORD, "LD_PRELOAD": PRELOAD}).to_string(),
    )]));
    let cfg = aws_only_config(&moto.url);

    let manifest = deployment(&[("env-from", "aws:team-a/env")], "app");
    let run = run_injected(&manifest, &cfg, &[], &STATIC_AWS_KEYS);
    let last = run.failed_without_retry();
    assert!(
        last.starts_with(
            "secret-injector init: aws:team-a/env: key `LD_PRELOAD` is a loader variable"
        ) && last.contains(
            "add it to secret-injector.io/env-from-allow (for example secret-injector.io/env-from-allow: LD_PRELOAD)"
        ),
        "{last}"
    );
    assert!(
        !run.output_text().contains(PRELOAD),
        "a value in the output"
    );
    run.assert_no_values();
    assert_eq!(
        std::fs::read_dir(run.env_dir()).unwrap().count(),
        0,
        "no env file, no binary"
    );

    let manifest = deployment(
        &[
            ("env-from", "aws:team-a/env"),
            ("env-from-allow", "LD_PRELOAD"),
        ],
        "app",
    );
    let run = run_injected(&manifest, &cfg, &[], &STATIC_AWS_KEYS);
    assert!(run.out.status.success(), "{}", run.stderr());
    let file: Value =
        serde_json::from_slice(&std::fs::read(run.env_dir().join("env.json")).unwrap()).unwrap();
    assert!(
        file["vars"]["LD_PRELOAD"] == PRELOAD && file["vars"]["POSTGRES_PASSWORD"] == CNPG_PASSWORD,
        "both variables are written"
    );
    assert_eq!(file["loader_allowed"], json!(["LD_PRELOAD"]));
    assert!(!run.output_text().contains(PRELOAD));
    run.assert_no_values();
    drop(moto);
}
