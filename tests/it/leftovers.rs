//! A failing `init`, or a refresh sidecar whose first publication fails, leaves nothing
//! that holds a value (README: a permanent failure writes nothing). Each failure path is
//! run as the real binary, exactly as `inject -f` writes the container, against real
//! OpenBao (and, for SIGTERM during a fetch, an AWS endpoint that never answers); then
//! every file under the pod's directories is searched for every value the store gave
//! out, and for temp files.
//!
//! A restarted sidecar keeps its previous good generation, and a publication that
//! fails in the sidecar's loop keeps the last good one: only what the failing run
//! wrote is removed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixtures::{
    API_KEY, DB_PASSWORD, InitRun, NOWHERE, Prepared, STATIC_AWS_KEYS, all_values, config,
    deployment, prepare_injected, runtime_signer_and_bao, vault_only_config, vault_token,
};
use crate::support::{OpenBao, TokenSigner, free_port};

/// A value the kubelet's env-file format cannot carry (a single quote).
const QUOTED: &str = "it's-Qx3-quoted";
/// team-a/db's password after the restart tests change it.
const NEW_PASSWORD: &str = "pw-new-Rt5-after-restart";

/// Every value a run could have fetched.
fn values(bao: &OpenBao) -> Vec<String> {
    let mut v: Vec<String> = all_values().iter().map(|s| s.to_string()).collect();
    v.extend([QUOTED.to_string(), NEW_PASSWORD.to_string()]);
    // and whatever else OpenBao answered under a credential-like key
    v.extend(bao.issued_secrets());
    v
}

/// OpenBao as the fixtures set it up, plus a secret holding a single quote.
fn arrange() -> (tokio::runtime::Runtime, TokenSigner, OpenBao) {
    let (rt, signer, bao) = runtime_signer_and_bao();
    rt.block_on(bao.kv2_put("team-a/quoted", json!({"v": QUOTED})));
    (rt, signer, bao)
}

fn is_temp(name: &str) -> bool {
    name.starts_with("..tmp.")
}

/// Whether `path` is byte for byte the env-mode wrapper (a copy of a binary holds no
/// value, and is too large to search in a debug build).
fn is_the_wrapper(path: &Path) -> bool {
    let wrapper = Path::new(env!("CARGO_BIN_EXE_secret-injector-exec"));
    let (Ok(a), Ok(b)) = (std::fs::metadata(path), std::fs::metadata(wrapper)) else {
        return false;
    };
    if a.len() != b.len() {
        return false;
    }
    let (mut fa, mut fb) = (
        std::fs::File::open(path).unwrap(),
        std::fs::File::open(wrapper).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Every entry under `dir`, recursively, not following symlinks.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        }
    }
}

/// No temp file under `dir`, and none of `values` in any file under it (or in the
/// target of a symlink). Returns what is left, relative to `dir`, for the caller's
/// own checks.
#[track_caller]
fn assert_no_value_under(dir: &Path, values: &[String], what: &str) -> Vec<String> {
    let mut entries = Vec::new();
    walk(dir, &mut entries);
    let mut left = Vec::new();
    for path in entries {
        let rel = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!is_temp(&name), "{what}: a temp file is left: {rel}");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_symlink() {
            std::fs::read_link(&path)
                .unwrap()
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else if meta.is_file() {
            if meta.len() > 1 << 20 {
                assert!(is_the_wrapper(&path), "{what}: unexpected large file {rel}");
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            }
        } else {
            Vec::new()
        };
        for v in values {
            assert!(
                !content.windows(v.len()).any(|w| w == v.as_bytes()),
                "{what}: {rel} holds the value {v:?}"
            );
        }
        left.push(rel);
    }
    left.sort();
    left
}

/// The pod's directories after a failed run: no value anywhere under them, and no
/// temp file.
#[track_caller]
fn assert_nothing_left(prepared_root: &Path, bao: &OpenBao, what: &str) {
    let left = assert_no_value_under(prepared_root, &values(bao), what);
    // Only what the test made: the config, the token volumes and the (empty or
    // test-made) mount directories.
    for rel in &left {
        let path = prepared_root.join(rel);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) && !rel.contains("..gen.") {
            continue;
        }
        assert!(
            !rel.ends_with("env.json")
                && !rel.ends_with("vars.env")
                && !rel.ends_with("bin/secret-injector")
                && !rel.contains("..gen.")
                && !rel.ends_with("..data"),
            "{what}: {rel} is left:\n{left:#?}"
        );
    }
}

/// `cmd` with another program: the same args and env (the container's only).
fn with_program(cmd: &Command, program: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.args(cmd.get_args());
    c
}

/// This binary alone in a directory, without `secret-injector-exec` beside it (a hard
/// link: the same file system as the target directory). Returns the directory (keep
/// it) and the binary's path.
fn agent_without_wrapper() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = dir.path().join("secret-injector-agent");
    if std::fs::hard_link(crate::util::AGENT, &bin).is_err() {
        std::fs::copy(crate::util::AGENT, &bin).unwrap();
    }
    assert!(!dir.path().join("secret-injector-exec").exists());
    (dir, bin)
}

/// What breaks a run, done to the prepared pod directories before it starts.
#[derive(Clone, Copy, Debug)]
enum Breakage {
    /// The binary runs without the wrapper beside it.
    WrapperMissing,
    /// A regular file where the env directory should be.
    EnvDirIsAFile,
    /// A regular file where the files directory should be.
    OutDirIsAFile,
    /// A non-empty directory where `env.json` goes.
    DirectoryAtEnvFile,
    /// A non-empty directory where the file `db` goes (`api-key` sorts before it).
    DirectoryAtFile,
}

fn files_dir(p: &Prepared) -> PathBuf {
    p.mounts["/secret-injector/files"].clone()
}

fn env_dir(p: &Prepared) -> PathBuf {
    p.mounts["/secret-injector/env"].clone()
}

fn replace_with_file(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::write(dir, "not a directory").unwrap();
}

fn directory_at(path: &Path) {
    std::fs::create_dir_all(path.join("in-the-way")).unwrap();
}

/// Break `prepared` as `breakage` says; returns the directory of a copied binary to
/// keep while the command runs.
fn break_it(prepared: &mut Prepared, breakage: Breakage) -> Option<tempfile::TempDir> {
    match breakage {
        Breakage::WrapperMissing => {
            let (dir, bin) = agent_without_wrapper();
            prepared.cmd = with_program(&prepared.cmd, &bin);
            return Some(dir);
        }
        Breakage::EnvDirIsAFile => replace_with_file(&env_dir(prepared)),
        Breakage::OutDirIsAFile => replace_with_file(&files_dir(prepared)),
        Breakage::DirectoryAtEnvFile => directory_at(&env_dir(prepared).join("env.json")),
        Breakage::DirectoryAtFile => directory_at(&files_dir(prepared).join("db")),
    }
    None
}

/// Run the prepared container to its end (a refresh sidecar that fails its first
/// publication exits by itself).
fn run(prepared: &mut Prepared, env: &[(&str, &str)]) -> (Output, Duration) {
    for (k, v) in env {
        prepared.cmd.env(k, v);
    }
    let start = Instant::now();
    let out = prepared.cmd.stdin(Stdio::null()).output().unwrap();
    (out, start.elapsed())
}

/// The sidecar's settings for a test: 1 s interval, probes on a free port.
fn as_sidecar(prepared: &mut Prepared) {
    assert_eq!(prepared.container["name"], "secret-injector-refresh");
    prepared
        .cmd
        .env("SECRET_INJECTOR_REFRESH_INTERVAL", "1s")
        .arg(format!("--probe-listen=127.0.0.1:{}", free_port()));
}

fn as_init_run(prepared: Prepared, out: Output, elapsed: Duration, tokens: &[String]) -> InitRun {
    InitRun {
        out,
        elapsed,
        root: prepared.root,
        mounts: prepared.mounts,
        tokens: tokens.to_vec(),
    }
}

/// A pod with two files (`api-key`, `db`) and env-mode variables, plus `extra`.
fn files_and_env(extra: &[(&str, &str)]) -> String {
    let mut annotations = vec![
        ("secret-db", "vault:secret/data/team-a/db#password"),
        ("secret-api-key", "vault:kv1/team-a/api#key"),
        ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
        ("env-API_KEY", "vault:kv1/team-a/api#key"),
    ];
    annotations.extend_from_slice(extra);
    deployment(&annotations, "app")
}

/// Each way the write step of `init`, and the first publication of the refresh
/// sidecar, can fail after the values are fetched: the run exits 1 with a line that
/// names the cause, and leaves no value and no temp file behind. The same pod without
/// the breakage succeeds (the check would otherwise prove nothing).
#[test]
fn a_failed_write_leaves_no_value_behind() {
    let (_rt, signer, bao) = arrange();
    let cfg = vault_only_config(&bao.addr);
    let token = vault_token(&signer, "app");
    let cases = [
        (Breakage::WrapperMissing, "cannot copy the env-mode wrapper"),
        (Breakage::EnvDirIsAFile, "cannot write the env file"),
        (Breakage::DirectoryAtEnvFile, "cannot write the env file"),
        (Breakage::OutDirIsAFile, "the secret files in"),
        (Breakage::DirectoryAtFile, "the secret files in"),
    ];
    for refresh in [false, true] {
        let manifest = if refresh {
            files_and_env(&[("refresh-interval", "10s")])
        } else {
            files_and_env(&[])
        };
        let which = if refresh { "refresh" } else { "init" };
        for (breakage, expected) in cases {
            let what = format!("{which}, {breakage:?}");
            let mut prepared = prepare_injected(&manifest, &cfg, std::slice::from_ref(&token));
            if refresh {
                as_sidecar(&mut prepared);
            }
            let _bin = break_it(&mut prepared, breakage);
            let (out, elapsed) = run(&mut prepared, &[]);
            let root = prepared.root.path().to_path_buf();
            let run = as_init_run(prepared, out, elapsed, std::slice::from_ref(&token.1));
            let last = run.failed_without_retry();
            assert!(
                last.starts_with(&format!("secret-injector {which}: ")) && last.contains(expected),
                "{what}: {last}"
            );
            run.assert_no_values();
            assert_nothing_left(&root, &bao, &what);
        }
        // Unbroken, the same pod gets its files and env file.
        let mut prepared = prepare_injected(&manifest, &cfg, std::slice::from_ref(&token));
        if refresh {
            as_sidecar(&mut prepared);
            let mut child = prepared
                .cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_for_file(&files_dir(&prepared).join("db"), &mut child);
            terminate(child);
        } else {
            let (out, _) = run(&mut prepared, &[]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(read(&files_dir(&prepared).join("db")), DB_PASSWORD);
        assert_eq!(read(&files_dir(&prepared).join("api-key")), API_KEY);
        assert!(read(&env_dir(&prepared).join("env.json")).contains(DB_PASSWORD));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Wait until `path` exists (the sidecar's first generation), or fail if the child
/// exits or 20 s pass.
fn wait_for_file(path: &Path, child: &mut std::process::Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}: never written",
            path.display()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the sidecar exited ({status}) before writing {}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the child's output.
fn terminate(child: std::process::Child) -> Output {
    // SAFETY: kill(2) with a pid this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait_with_output().unwrap()
}

/// Failures before anything is written, after some values were fetched: a template
/// that fails to render, a secret that does not exist beside one that does, and the
/// kubelet's env file that cannot carry a value (`file-key-ref`). For `init` and for
/// the refresh sidecar's first fetch.
#[test]
fn a_failure_after_some_values_were_fetched_leaves_no_value_behind() {
    let (_rt, signer, bao) = arrange();
    let token = vault_token(&signer, "app");
    let vault_cfg = vault_only_config(&bao.addr);
    let key_ref_cfg = format!("{vault_cfg}env_delivery: file-key-ref\n");
    let cases = [
        (
            "a template error",
            vec![
                ("secret-db", "vault:secret/data/team-a/db"),
                ("secret-api-key", "vault:kv1/team-a/api#key"),
                ("template-cfg", "{{ secrets.db.nokey }}"),
                ("secret-cfg", "vault:secret/data/team-a/db"),
            ],
            &vault_cfg,
            "template for file `cfg`",
        ),
        (
            "a missing secret",
            vec![
                ("secret-db", "vault:secret/data/team-a/db#password"),
                ("secret-api-key", "vault:kv1/team-a/api#key"),
                ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
                ("secret-nope", "vault:secret/data/team-a/nope#x"),
            ],
            &vault_cfg,
            "not found (HTTP 404)",
        ),
        (
            "a value the kubelet's env file cannot carry",
            vec![
                ("secret-db", "vault:secret/data/team-a/db#password"),
                ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
                ("env-QUOTED", "vault:secret/data/team-a/quoted#v"),
            ],
            &key_ref_cfg,
            "the value of `QUOTED` contains a single quote",
        ),
    ];
    for refresh in [false, true] {
        let which = if refresh { "refresh" } else { "init" };
        for (case, annotations, cfg, expected) in &cases {
            let what = format!("{which}, {case}");
            let mut annotations = annotations.clone();
            if refresh {
                annotations.push(("refresh-interval", "10s"));
            }
            let manifest = deployment(&annotations, "app");
            let mut prepared = prepare_injected(&manifest, cfg, std::slice::from_ref(&token));
            if refresh {
                as_sidecar(&mut prepared);
            }
            let (out, elapsed) = run(&mut prepared, &[]);
            let root = prepared.root.path().to_path_buf();
            let run = as_init_run(prepared, out, elapsed, std::slice::from_ref(&token.1));
            let last = run.failed_without_retry();
            assert!(last.contains(expected), "{what}: {last}");
            run.assert_no_values();
            assert_nothing_left(&root, &bao, &what);
        }
    }
}

/// SIGTERM while one secret is fetched and another is still retrying (its store is
/// unreachable): `init` exits 1 and the sidecar 0, and neither leaves a value.
#[test]
fn sigterm_during_the_fetch_leaves_no_value_behind() {
    let (rt, signer, bao) = arrange();
    let token = vault_token(&signer, "app");
    // AWS answers nowhere: retried until the deadline (2m).
    let cfg = config(&bao.addr, NOWHERE);
    for refresh in [false, true] {
        let which = if refresh { "refresh" } else { "init" };
        let mut annotations = vec![
            ("secret-db", "vault:secret/data/team-a/db#password"),
            ("env-DB_PASSWORD", "vault:secret/data/team-a/db#password"),
            ("secret-aws", "aws:team-a/unreachable"),
        ];
        if refresh {
            annotations.push(("refresh-interval", "10s"));
        }
        let manifest = deployment(&annotations, "app");
        let mut prepared = prepare_injected(&manifest, &cfg, std::slice::from_ref(&token));
        if refresh {
            as_sidecar(&mut prepared);
        }
        // The output goes to a file: at trace level it would fill a pipe nobody reads.
        let log = tempfile::NamedTempFile::new().unwrap();
        let before = rt.block_on(bao.token_count());
        let mut child = prepared
            .cmd
            .envs(STATIC_AWS_KEYS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        // Logged in (OpenBao holds one more token), the Vault secret read, AWS retrying.
        let start = Instant::now();
        while rt.block_on(bao.token_count()) <= before {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{which}: no login"
            );
            assert!(child.try_wait().unwrap().is_none(), "{which} exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "{which} exited");
        let out = terminate(child);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.contains("retrying"), "{which}: not retrying:\n{text}");
        if refresh {
            assert!(out.status.success(), "{which}: {}\n{text}", out.status);
        } else {
            assert_eq!(out.status.code(), Some(1), "{text}");
            assert!(
                text.contains("stopped by SIGTERM before the secrets were written"),
                "{text}"
            );
        }
        assert_nothing_left(prepared.root.path(), &bao, which);
    }
}

/// Temp files a killed run left (OOM-killed while writing: they hold values) are
/// removed by the next run, even when that run fails before it writes anything.
#[test]
fn a_killed_runs_temp_files_are_removed_by_the_next_run() {
    let (_rt, signer, bao) = arrange();
    let token = vault_token(&signer, "app");
    for refresh in [false, true] {
        let which = if refresh { "refresh" } else { "init" };
        // This run fails too: a secret that does not exist.
        let mut extra = vec![("secret-nope", "vault:secret/data/team-a/nope#x")];
        if refresh {
            extra.push(("refresh-interval", "10s"));
        }
        let manifest = files_and_env(&extra);
        let mut prepared = prepare_injected(
            &manifest,
            &vault_only_config(&bao.addr),
            std::slice::from_ref(&token),
        );
        if refresh {
            as_sidecar(&mut prepared);
        }
        let files = files_dir(&prepared);
        let env = env_dir(&prepared);
        std::fs::write(files.join("..tmp.db"), DB_PASSWORD).unwrap();
        std::fs::write(env.join("..tmp.env.json"), DB_PASSWORD).unwrap();
        std::fs::create_dir_all(env.join("bin")).unwrap();
        std::fs::write(env.join("bin/..tmp.secret-injector"), API_KEY).unwrap();
        if refresh {
            // A generation written and never switched to.
            std::fs::create_dir(files.join("..gen.1")).unwrap();
            std::fs::write(files.join("..gen.1/db"), DB_PASSWORD).unwrap();
        }
        let (out, _) = run(&mut prepared, &[]);
        assert_eq!(out.status.code(), Some(1), "{which}");
        assert_nothing_left(prepared.root.path(), &bao, which);
    }
}

/// A restarted sidecar whose first publication fails keeps the previous run's good
/// generation and env file, and removes only what it wrote itself: the new value is
/// nowhere on disk.
#[test]
fn a_restarted_sidecar_that_fails_keeps_the_previous_good_files() {
    let (rt, signer, bao) = arrange();
    let token = vault_token(&signer, "app");
    let manifest = files_and_env(&[("refresh-interval", "10s")]);
    let mut prepared = prepare_injected(&manifest, &vault_only_config(&bao.addr), &[token]);
    as_sidecar(&mut prepared);
    let files = files_dir(&prepared);
    let env = env_dir(&prepared);
    let mut child = prepared
        .cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&files.join("db"), &mut child);
    let out = terminate(child);
    assert!(out.status.success());
    let env_before = read(&env.join("env.json"));
    assert!(env_before.contains(DB_PASSWORD));

    rt.block_on(bao.kv2_put(
        "team-a/db",
        json!({"username": "app", "password": NEW_PASSWORD}),
    ));
    let (_bin, copy) = agent_without_wrapper();
    let mut again = with_program(&prepared.cmd, &copy);
    let out = again.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot copy the env-mode wrapper"),
        "{stderr}"
    );

    let left = assert_no_value_under(
        prepared.root.path(),
        &[NEW_PASSWORD.to_string()],
        "the restarted sidecar",
    );
    assert_eq!(read(&files.join("db")), DB_PASSWORD, "the last good files");
    assert_eq!(
        read(&env.join("env.json")),
        env_before,
        "the last good env file"
    );
    assert_eq!(
        std::fs::read_link(files.join("..data")).unwrap(),
        Path::new("..gen.1")
    );
    let generations: Vec<&String> = left.iter().filter(|n| n.contains("..gen.")).collect();
    assert!(
        generations
            .iter()
            .all(|g| g.starts_with("secret-injector-files/..gen.1")),
        "{left:#?}"
    );
}

/// A publication that fails in the sidecar's loop (here: a directory is in the way of
/// a file's link) keeps the last good generation in place and removes the one it
/// wrote: the new value is nowhere on disk.
#[test]
fn a_failed_publication_in_the_loop_keeps_the_last_good_generation() {
    let (rt, signer, bao) = arrange();
    let token = vault_token(&signer, "app");
    let manifest = deployment(
        &[
            ("secret-db", "vault:secret/data/team-a/db#password"),
            ("secret-api-key", "vault:kv1/team-a/api#key"),
            ("refresh-interval", "10s"),
        ],
        "app",
    );
    let mut prepared = prepare_injected(&manifest, &vault_only_config(&bao.addr), &[token]);
    as_sidecar(&mut prepared);
    let files = files_dir(&prepared);
    // The output goes to a file: at trace level it would fill a pipe nobody reads.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = prepared
        .cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    wait_for_file(&files.join("db"), &mut child);
    // `api-key`'s link becomes a directory, then the secret changes.
    std::fs::remove_file(files.join("api-key")).unwrap();
    directory_at(&files.join("api-key"));
    rt.block_on(bao.kv2_put(
        "team-a/db",
        json!({"username": "app", "password": NEW_PASSWORD}),
    ));
    // The next cycles (1 s apart) fetch the new value and fail to publish it; the first
    // retry comes 10 s later, so this sees one or two attempts.
    std::thread::sleep(Duration::from_secs(4));
    assert!(child.try_wait().unwrap().is_none(), "the sidecar exited");
    let out = terminate(child);
    assert!(out.status.success(), "{}", out.status);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("refresh failed; keeping the last good files"),
        "{text}"
    );
    let left = assert_no_value_under(
        prepared.root.path(),
        &[NEW_PASSWORD.to_string()],
        "the failed publication",
    );
    assert_eq!(read(&files.join("db")), DB_PASSWORD, "the last good files");
    assert_eq!(
        std::fs::read_link(files.join("..data")).unwrap(),
        Path::new("..gen.1")
    );
    let generations: Vec<&String> = left.iter().filter(|n| n.contains("..gen.")).collect();
    assert!(
        generations
            .iter()
            .all(|g| g.starts_with("secret-injector-files/..gen.1")),
        "{left:#?}"
    );
}
