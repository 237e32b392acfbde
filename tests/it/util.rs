//! Helpers shared by the integration tests: the binary, free ports, a running webhook,
//! an HTTPS client that trusts only the test CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The webhook's binary: `serve`, `inject`, `certs`.
pub const BIN: &str = env!("CARGO_BIN_EXE_secret-injector");
/// The agent's binary, which the injected containers run: `init`, `refresh`, `exec`.
pub const AGENT: &str = env!("CARGO_BIN_EXE_secret-injector-agent");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG");
    c
}

pub fn agent() -> Command {
    let mut c = Command::new(AGENT);
    c.env_remove("RUST_LOG");
    c
}

/// Run the binary with `args` and `stdin`, returning its output.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn secret-injector");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

pub use crate::support::{free_port, rustls_client_config};

/// A multi-threaded runtime for tests that drive async clients.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Write a CA and serving certificate for 127.0.0.1/localhost with the `certs` command.
pub fn make_certs(dir: &Path, ca: Option<&Path>) -> String {
    let out_dir = dir.to_str().unwrap();
    let mut args = vec![
        "certs",
        "--out-dir",
        out_dir,
        "--name",
        "localhost",
        "--name",
        "127.0.0.1",
    ];
    let (cert, key);
    if let Some(ca) = ca {
        cert = ca.join("ca.crt").to_str().unwrap().to_string();
        key = ca.join("ca.key").to_str().unwrap().to_string();
        args.extend(["--ca-cert", &cert, "--ca-key", &key]);
    }
    let out = run(&args, None);
    assert!(
        out.status.success(),
        "certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `serve` process on free ports; killed on drop.
pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub certs: tempfile::TempDir,
    pub log: PathBuf,
}

impl Webhook {
    pub fn start(extra: &[&str]) -> Webhook {
        Webhook::start_env(&[], extra)
    }

    /// Like [`Webhook::start`], with extra environment variables for the process.
    /// Ports are picked free and then bound by the process, so another test can take
    /// one in between: a start that fails on a port in use is retried with new ones.
    pub fn start_env(env: &[(&str, &str)], extra: &[&str]) -> Webhook {
        for _ in 0..5 {
            let mut w = Webhook::spawn(env, extra);
            match w.wait_ready() {
                Ok(()) => return w,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("webhook not ready; log:\n{log}"),
            }
        }
        panic!("webhook could not bind free ports in 5 attempts");
    }

    fn spawn(env: &[(&str, &str)], extra: &[&str]) -> Webhook {
        let certs = tempfile::tempdir().unwrap();
        make_certs(certs.path(), None);
        let port = free_port();
        let admin = free_port();
        let log = certs.path().join("serve.log");
        let child = bin()
            .env("RUST_LOG", "trace")
            .args([
                "serve",
                "--kube=off",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--tls-cert",
                certs.path().join("tls.crt").to_str().unwrap(),
                "--tls-key",
                certs.path().join("tls.key").to_str().unwrap(),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn serve");
        Webhook {
            child,
            port,
            admin,
            certs,
            log,
        }
    }

    /// Ready within 20 s, or the log of a process that exited or never got ready.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(body) = http_get(self.admin, "/readyz")
                && body.starts_with("ready")
            {
                return Ok(());
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return Err(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.log_text())
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.path().join("ca.crt")
    }

    /// The process is running (not exited, not a zombie).
    pub fn child_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
            .unwrap_or(false)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle`, or as it is after 2 s: the per-review lines are
    /// written in batches, at least every 100 ms.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let log = self.log_text();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> reqwest::Client {
        https_client(&self.ca())
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on the admin port (no client library needed).
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// An HTTPS client that trusts only the test CA (so the server's chain is verified).
pub fn https_client(ca: &Path) -> reqwest::Client {
    let mut cfg = rustls_client_config(ca);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The leaf certificate the server presents on a fresh TLS connection.
pub async fn peer_leaf(port: u16, ca: &Path) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls_client_config(ca)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub fn pem_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Load a YAML fixture (all documents).
pub fn fixture_docs(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    webhook::inject::parse_documents(&text).unwrap()
}

/// The pod template of a workload, as the API server sends it in a review of a pod a
/// controller creates: `generateName`, no name, no namespace.
pub fn pod_from_workload(doc: &Value) -> Value {
    let ptr = match doc["kind"].as_str().unwrap() {
        "Pod" => "",
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => "/spec/template",
    };
    let mut pod = doc.pointer(ptr).unwrap().clone();
    if ptr.is_empty() {
        return pod;
    }
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    let meta = pod["metadata"].as_object_mut().unwrap();
    meta.insert(
        "generateName".into(),
        format!("{}-", doc["metadata"]["name"].as_str().unwrap()).into(),
    );
    meta.insert("namespace".into(), "".into());
    pod
}

/// Apply a JSON Patch with Python's `jsonpatch` (an implementation independent of the
/// Rust code) from the test venv that scripts/test.sh sets up.
pub fn apply_patch_python(doc: &Value, patch: &Value) -> Value {
    let python = crate::support::venv_bin("python");
    let script = "import json,sys,jsonpatch\nd=json.load(sys.stdin)\nprint(json.dumps(jsonpatch.apply_patch(d['doc'], d['patch'])))";
    let input = serde_json::json!({"doc": doc, "patch": patch}).to_string();
    use std::io::Write;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python jsonpatch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
