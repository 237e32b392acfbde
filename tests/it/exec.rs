//! `exec` as a wrapped container runs it: the program is found with the container's own
//! `PATH`, whatever the env file sets, and a loader variable the file does not allow
//! stops it before the app starts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util;

fn script(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_injected_path_does_not_choose_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("image-bin");
    let planted = dir.path().join("planted");
    script(&real, "the-app", "echo \"real PATH=$PATH\"");
    script(&planted, "the-app", "echo planted; exit 3");
    let env_file = dir.path().join("env.json");
    let injected_path = format!("{}:/usr/bin:/bin", planted.display());
    std::fs::write(
        &env_file,
        serde_json::json!({"vars": {"PATH": injected_path}, "loader_allowed": ["PATH"]})
            .to_string(),
    )
    .unwrap();
    let run = |container_path: &str| {
        util::agent()
            .args(["exec", "--env-file", env_file.to_str().unwrap(), "--"])
            .arg("the-app")
            .env_clear()
            .env("PATH", container_path)
            .output()
            .unwrap()
    };

    // The container's PATH finds the image's program; the app still gets the variable.
    let out = run(&format!("{}:/usr/bin:/bin", real.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("real PATH={injected_path}"));

    // Not in the container's PATH: not found, even though the injected PATH has it.
    let out = run("/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("secret-injector exec: cannot run the-app: not found in the container's PATH (/usr/bin:/bin)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "the planted program ran");
}

#[test]
fn a_loader_variable_the_env_file_does_not_allow_stops_exec() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.json");
    std::fs::write(
        &env_file,
        r#"{"vars": {"A": "1", "LD_PRELOAD": "/nonexistent/value-canary.so"}}"#,
    )
    .unwrap();
    let out = util::agent()
        .args(["exec", "--env-file", env_file.to_str().unwrap(), "--"])
        .args(["/bin/sh", "-c", "echo started"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stdout.is_empty(), "the app started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("sets `LD_PRELOAD`, a loader variable")
            && stderr.contains("env-from-allow")
            && !stderr.contains("value-canary"),
        "{stderr}"
    );
}
