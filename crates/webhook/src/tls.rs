//! Serving TLS: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only, and the
//! certificate re-read when its files change (cert-manager rotation) without a restart.
//!
//! The reload swaps the config behind `RustlsConfig` (an `ArcSwap`): handshakes in flight
//! finish with the config they started with, new ones get the new certificate. A pair
//! that does not load (a key written before its certificate, mid-rotation) is logged and
//! retried on the next tick; the old certificate keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use runtime::{Error, Result};

/// Build a server config from PEM bytes (no client authentication).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig> {
    server_config_with(cert_pem, key_pem, None)
}

/// Build a server config from PEM bytes; with `clients`, every client must present a
/// certificate that it accepts.
pub fn server_config_with(
    cert_pem: &[u8],
    key_pem: &[u8],
    clients: Option<&Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("cannot parse the certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(
            "the certificate file holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Tls(format!("cannot parse the private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("the certificate and key do not form a pair: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The PEM bytes of a certificate and its key, as last loaded.
pub type Pem = (Vec<u8>, Vec<u8>);

/// Certificate and key files to serve and watch.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client authentication (`--client-ca`), kept across reloads.
    pub clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl CertFiles {
    fn read(&self) -> Result<Pem> {
        let cert = std::fs::read(&self.cert)
            .map_err(Error::io(format!("read {}", self.cert.display())))?;
        let key =
            std::fs::read(&self.key).map_err(Error::io(format!("read {}", self.key.display())))?;
        Ok((cert, key))
    }

    async fn read_async(&self) -> Result<Pem> {
        let cert = tokio::fs::read(&self.cert)
            .await
            .map_err(Error::io(format!("read {}", self.cert.display())))?;
        let key = tokio::fs::read(&self.key)
            .await
            .map_err(Error::io(format!("read {}", self.key.display())))?;
        Ok((cert, key))
    }

    /// Load the pair once (at start: a failure here is fatal).
    pub fn load(&self) -> Result<(RustlsConfig, Pem)> {
        let (cert, key) = self.read()?;
        let config = server_config_with(&cert, &key, self.clients.as_ref())?;
        Ok((RustlsConfig::from_config(Arc::new(config)), (cert, key)))
    }

    /// Poll the files every `every` and swap in a changed pair. Runs until dropped.
    pub async fn watch(
        self,
        tls: RustlsConfig,
        mut loaded: Pem,
        every: Duration,
        metrics: Arc<Metrics>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let current = match self.read_async().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the serving certificate; keeping the loaded one");
                    continue;
                }
            };
            if current == loaded {
                continue;
            }
            match server_config_with(&current.0, &current.1, self.clients.as_ref()) {
                Ok(config) => {
                    tls.reload_from_config(Arc::new(config));
                    loaded = current;
                    metrics.tls_reloads.inc();
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "changed certificate files do not load yet; keeping the loaded one");
                }
            }
        }
    }
}

/// The verifier for `--client-ca` (and `--client-name`): a client certificate chained
/// to one of the CA certificates in `ca_pem`, and, when `names` is not empty, whose
/// common name or a DNS name is one of them.
pub fn client_verifier(ca_pem: &[u8], names: &[String]) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| Error::Tls(format!("cannot parse the client CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("the client CA certificate cannot be used: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("the client CA file holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::Tls(format!("cannot verify clients with that CA: {e}")))?;
    if names.is_empty() {
        return Ok(chain);
    }
    Ok(Arc::new(NamedClients {
        chain,
        names: names.to_vec(),
    }))
}

/// Chain verification, then the client's name.
#[derive(Debug)]
struct NamedClients {
    chain: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

/// The common name and DNS names of a certificate.
fn cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_string());
            }
        }
    }
    names
}

impl ClientCertVerifier for NamedClients {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if cert_names(end_entity)
            .iter()
            .any(|n| self.names.contains(n))
        {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    #[test]
    fn loads_a_pair_and_refuses_a_mismatch() {
        let names = vec!["localhost".to_string()];
        let a = certs::generate(&names, None, 1).unwrap();
        let b = certs::generate(&names, None, 1).unwrap();
        server_config(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let e = server_config(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("pair"), "{e}");
        assert!(server_config(b"junk", a.key_pem.as_bytes()).is_err());
    }
}
