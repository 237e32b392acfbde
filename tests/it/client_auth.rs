//! `serve --client-ca … --client-name …`: only the API server's client certificate gets
//! an answer on /mutate; everyone else fails the TLS handshake.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::util::{self, Webhook, rt};
use webhook::admission::request_for;

fn certs(out: &Path, extra: &[&str]) {
    let mut args = vec!["certs", "--out-dir", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = util::run(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An HTTPS client that trusts the webhook's CA and presents `cert`/`key`, if given.
fn client(server_ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server_ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

#[test]
fn only_the_named_client_certificate_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other_ca, other_name) = (
        dir.path().join("apiserver"),
        dir.path().join("other-ca"),
        dir.path().join("other-name"),
    );
    // The serving certificate carries the client's name too, so only its missing
    // clientAuth usage can refuse it.
    certs(
        &good,
        &["--client", "kube-apiserver", "--name", "kube-apiserver"],
    );
    certs(&other_ca, &["--client", "kube-apiserver"]);
    let (ca, ca_key) = (good.join("ca.crt"), good.join("ca.key"));
    certs(
        &other_name,
        &[
            "--ca-cert",
            ca.to_str().unwrap(),
            "--ca-key",
            ca_key.to_str().unwrap(),
            "--client",
            "intruder",
        ],
    );
    let w = Webhook::start(&[
        "--client-ca",
        ca.to_str().unwrap(),
        "--client-name",
        "kube-apiserver",
    ]);
    let body = request_for(
        &serde_json::json!({
            "metadata": {"generateName": "app-", "annotations": {"secret-injector.io/secret-db": "vault:secret/data/db"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]},
        }),
        "team-a",
        "CREATE",
    );
    let id = |d: &Path, name: &str| (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
    let cases = [
        ("no certificate", None),
        ("another CA", Some(id(&other_ca, "client"))),
        ("another name", Some(id(&other_name, "client"))),
        (
            "a serving certificate of the right CA",
            Some(id(&good, "tls")),
        ),
        ("the API server", Some(id(&good, "client"))),
    ];
    rt().block_on(async {
        for (what, identity) in cases {
            let c = client(
                &w.ca(),
                identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            );
            let sent = c.post(w.url()).body(body.clone()).send().await;
            if what == "the API server" {
                let resp = sent.unwrap_or_else(|e| panic!("{what}: {e:?}\n{}", w.log_text()));
                assert_eq!(resp.status(), 200, "{what}");
                let review: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(review["response"]["allowed"], true, "{what}");
            } else {
                let failed = match sent {
                    Err(_) => true,
                    // TLS 1.3: the refusal may arrive after the client's first flight.
                    Ok(resp) => resp.bytes().await.is_err(),
                };
                assert!(failed, "{what}: answered");
            }
        }
    });
    assert_eq!(util::http_get(w.admin, "/healthz").unwrap(), "ok\n");
}
