//! `serve --self-signed` writes keys into a folder others may share (`$TMPDIR`): nothing
//! planted there is followed, the directory must be ours and private, and a busy port
//! fails the start before anything is written.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn serve(dir: &Path, port: u16, admin: u16) -> Child {
    util::bin()
        .args([
            "serve",
            "--kube=off",
            "--self-signed",
            "--self-signed-dir",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A start that must fail: its output, within a few seconds.
fn refused(dir: &Path, port: u16, admin: u16) -> (Output, String) {
    let mut child = serve(dir, port, admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve kept running with {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    (out, err)
}

#[test]
fn planted_symlink_and_wide_modes_are_replaced_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "victim").unwrap();
    let dir = tmp.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    std::os::unix::fs::symlink(&victim, dir.join("tls.key")).unwrap();
    std::fs::write(dir.join("ca.key"), "old").unwrap();
    set_mode(&dir.join("ca.key"), 0o666);

    let mut child = serve(&dir, util::free_port(), util::free_port());
    // ca-bundle.b64 is written last, and only once the start has got that far.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("ca-bundle.b64").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve exited {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no certificates written");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
    assert!(
        std::fs::symlink_metadata(dir.join("tls.key"))
            .unwrap()
            .is_file()
    );
    assert!(
        std::fs::read_to_string(dir.join("tls.key"))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(mode(&dir), 0o700, "our directory is tightened");
    for (f, want) in [
        ("ca.key", 0o600),
        ("tls.key", 0o600),
        ("ca.crt", 0o644),
        ("tls.crt", 0o644),
        ("ca-bundle.b64", 0o644),
    ] {
        assert_eq!(mode(&dir.join(f)), want, "{f}");
    }
}

#[test]
fn a_symlinked_or_shared_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    set_mode(&real, 0o700);
    std::fs::write(real.join("tls.key"), "victim").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (_, err) = refused(&link, util::free_port(), util::free_port());
    assert!(
        err.contains("is a symlink") && err.contains("--self-signed-dir"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(real.join("tls.key")).unwrap(),
        "victim"
    );

    set_mode(&real, 0o777);
    let (_, err) = refused(&real, util::free_port(), util::free_port());
    assert!(
        err.contains("mode 0777") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(real.join("tls.key")).unwrap(),
        "victim"
    );
    assert_eq!(mode(&real), 0o777);
}

#[test]
fn a_busy_port_fails_before_the_directory_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();

    let dir = tmp.path().join("webhook-port");
    let (_, err) = refused(&dir, busy_port, util::free_port());
    assert!(err.contains("bind the webhook listener"), "{err}");
    assert!(!dir.exists(), "created {} before binding", dir.display());

    let dir = tmp.path().join("admin-port");
    let (_, err) = refused(&dir, util::free_port(), busy_port);
    assert!(err.contains("bind the admin listener"), "{err}");
    assert!(!dir.exists(), "created {} before binding", dir.display());
}

/// Two servers on one directory: the second is refused, and the first keeps its
/// certificate (its clients would fail on a replaced one).
#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let mut first = serve(&dir, util::free_port(), util::free_port());
    let start = Instant::now();
    while !dir.join("ca.crt").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first server wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let (_, err) = refused(&dir, util::free_port(), util::free_port());
    assert!(
        err.contains("another `serve --self-signed` is using"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("ca.crt")).unwrap(),
        ca,
        "the first server's CA was replaced"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // once the first is gone, the directory is free again
    let mut again = serve(&dir, util::free_port(), util::free_port());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        again.try_wait().unwrap().is_none(),
        "a free directory is taken"
    );
    again.kill().unwrap();
    again.wait().unwrap();
}
