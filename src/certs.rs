//! A CA and a serving certificate for the webhook (`certs`, and `serve --self-signed`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// PEM material for a CA and one serving certificate.
pub struct Bundle {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Bundle {
    /// The `caBundle` of a webhook configuration: the CA PEM, base64-encoded.
    pub fn ca_bundle_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_cert_pem)
    }
}

fn tls_err(e: rcgen::Error) -> Error {
    Error::Tls(format!("certificate generation failed: {e}"))
}

/// The DNS names the API server uses to reach a webhook Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Generate a serving certificate for `names` (DNS names or IP addresses), signed by the
/// given CA (PEM cert + key) or by a new one.
pub fn generate(names: &[String], ca: Option<(&str, &str)>, days: u32) -> Result<Bundle> {
    let now = time::OffsetDateTime::now_utc();
    let (ca_cert_pem, ca_key) = match ca {
        Some((cert, key)) => (cert.to_string(), KeyPair::from_pem(key).map_err(tls_err)?),
        None => {
            let key = KeyPair::generate().map_err(tls_err)?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "secret-injector webhook CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(i64::from(days) * 2);
            let cert = params.self_signed(&key).map_err(tls_err)?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key)
        .map_err(|e| Error::Tls(format!("the CA certificate cannot be used: {e}")))?;

    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "secret-injector".into()),
    );
    for name in names {
        params.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e| Error::Tls(format!("`{name}` is not a DNS name: {e}")))?,
            ),
        });
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
    Ok(Bundle {
        ca_key_pem: ca_key.serialize_pem(),
        ca_cert_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Write `ca.crt`, `ca.key`, `tls.crt`, `tls.key` and `ca-bundle.b64` into `dir`
/// (keys with mode 0600). Returns the paths written.
pub fn write(bundle: &Bundle, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let files = [
        ("ca.crt", bundle.ca_cert_pem.as_str(), 0o644),
        ("ca.key", bundle.ca_key_pem.as_str(), 0o600),
        ("tls.crt", bundle.cert_pem.as_str(), 0o644),
        ("tls.key", bundle.key_pem.as_str(), 0o600),
    ];
    let b64 = bundle.ca_bundle_b64();
    let mut written = Vec::new();
    for (name, content, mode) in files
        .into_iter()
        .chain([("ca-bundle.b64", b64.as_str(), 0o644)])
    {
        let path = dir.join(name);
        write_atomic(&path, content.as_bytes(), mode)?;
        written.push(path);
    }
    Ok(written)
}

/// Write through a temp file and a rename, so a reader (the reloading server) never
/// sees half a file.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Error::io(format!("create {}", tmp.display())))?;
    f.write_all(content)
        .and_then(|_| f.sync_all())
        .map_err(Error::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("rename to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_chain_and_reuses_a_ca() {
        let names = service_names("secret-injector", "secret-injector-system");
        let a = generate(&names, None, 30).unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.contains("PRIVATE KEY"));
        let b = generate(&names, Some((&a.ca_cert_pem, &a.ca_key_pem)), 30).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.cert_pem, b.cert_pem);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.ca_bundle_b64())
            .unwrap();
        assert_eq!(decoded, a.ca_cert_pem.as_bytes());
    }
}
