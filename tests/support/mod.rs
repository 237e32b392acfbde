//! Real servers for tests and benches, one file each: OpenBao (`bao server -dev`) and
//! moto, both from the test venv that scripts/test.sh installs, and PostgreSQL from
//! Debian's packages, on free loopback ports; the Kubernetes side (a service-account
//! token signer, a TokenReview stand-in and a stand-in API server); Google Cloud's and Azure's token and
//! secret APIs, which nothing real serves here (`cloud.rs`); two small proxies (one that delays or
//! starts late, one that throttles like AWS); TLS for the tests' clients. This file
//! holds the small helpers they share.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub mod bench;
mod cloud;
mod kubernetes;
mod moto;
mod openbao;
mod postgres;
mod proxies;
mod tls;

// Each test or bench binary that includes this module uses a different subset.
#[allow(unused_imports)]
pub use self::{
    cloud::{AzureServer, AzureWorld, Federated, GcpServer, GcpWorld},
    kubernetes::{
        Access, ApiServer, Seen, TokenReviewServer, TokenSigner, rbac_grants, write_kubeconfig,
    },
    moto::Moto,
    openbao::OpenBao,
    postgres::Postgres,
    proxies::{Fault, TcpProxy, ThrottleProxy},
    tls::rustls_client_config,
};

/// A binary of the test venv (`bao`, `moto_server`).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("SECRET_INJECTOR_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh, which installs the test servers into .venv",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port p with p+1 also free (OpenBao dev mode takes p+1 for its cluster listener).
pub fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// Wait until `url` answers; `false` if the process exited first (a port race).
pub async fn wait_http(url: &str, what: &str, child: &mut Child) -> bool {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() < 500
        {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{what} exited early ({status}); retrying on another port");
            return false;
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tests' own client for setting servers up (it does not check dev-TLS
/// certificates; the code under test always does).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
