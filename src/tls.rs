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
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Build a server config from PEM bytes.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig> {
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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
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
        let config = server_config(&cert, &key)?;
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
            match server_config(&current.0, &current.1) {
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
