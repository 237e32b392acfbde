//! A CA and a serving certificate for the webhook (`certs`, and `serve --self-signed`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use runtime::files::{FileOut, write_all_or_nothing};
use runtime::{Error, Result};

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

/// A client certificate (`clientAuth`, common name and DNS name `name`) signed by the
/// CA of `bundle`: what the API server presents to `serve --client-ca`. Returns the
/// certificate and key PEM.
pub fn client_cert(bundle: &Bundle, name: &str, days: u32) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(&bundle.ca_key_pem).map_err(tls_err)?;
    let issuer = Issuer::from_ca_cert_pem(&bundle.ca_cert_pem, &ca_key)
        .map_err(|e| Error::Tls(format!("the CA certificate cannot be used: {e}")))?;
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| Error::Tls(format!("`{name}` is not a DNS name: {e}")))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Write `ca.crt`, `ca.key`, `tls.crt`, `tls.key` and `ca-bundle.b64` into `dir`
/// (keys 0600, certificates 0644), all or nothing with [`runtime::files::write_all_or_nothing`]. Creates `dir` if it is
/// missing; `serve --self-signed` checks it with [`private_dir`] first. Returns the paths
/// written.
pub fn write(bundle: &Bundle, dir: &Path) -> Result<Vec<PathBuf>> {
    let files = [
        FileOut::new("ca.crt", bundle.ca_cert_pem.as_str(), 0o644),
        FileOut::new("ca.key", bundle.ca_key_pem.as_str(), 0o600),
        FileOut::new("tls.crt", bundle.cert_pem.as_str(), 0o644),
        FileOut::new("tls.key", bundle.key_pem.as_str(), 0o600),
        FileOut::new("ca-bundle.b64", bundle.ca_bundle_b64(), 0o644),
    ];
    write_all_or_nothing(dir, &files)?;
    Ok(files.iter().map(|f| dir.join(&f.name)).collect())
}

/// Hold `dir` for this process: an exclusive `flock` on `dir/..lock`, released when the
/// returned file is dropped (or the process ends). A second `serve --self-signed` on the
/// same directory is refused instead of replacing the first one's certificate, which
/// the first would then reload under its clients' feet.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join("..lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io(format!("open {}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Tls(format!(
            "another `serve --self-signed` is using {}; give this one its own directory with --self-signed-dir",
            dir.display()
        )));
    }
    Ok(file)
}

/// Make `dir` fit to hold `serve --self-signed`'s keys, or refuse with the reason and the
/// fix. The default, `$TMPDIR/secret-injector`, sits in a folder every user can write, so
/// whoever creates that name first decides what it is.
///
/// - Missing: created with mode 0700 (its parents as `create_dir_all` makes them).
/// - Present: it must be a directory, not a symlink to one (it is opened with
///   `O_NOFOLLOW`), owned by the effective uid, and not writable by group or others. A
///   group/other-writable directory is refused even when it is ours: anyone could have
///   planted or swapped entries in it, and a later chmod cannot tell.
/// - Ours and acceptable: its mode is tightened to 0700 (through the opened descriptor,
///   so the change lands on the directory that was checked).
///
/// Only `dir` itself is checked: its parent must not let others rename it away (a sticky
/// folder such as `/tmp` does not).
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    let shown = dir.display();
    let fix = "choose another directory with --self-signed-dir";
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(Error::io(format!("create {}", parent.display())))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {shown}"))(e)),
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir);
    let d = match opened {
        Ok(d) => d,
        // O_NOFOLLOW|O_DIRECTORY on a symlink fails with ELOOP or ENOTDIR, depending on
        // the kernel; lstat says which it was.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let what = match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => "a symlink",
                _ => "not a directory",
            };
            return Err(Error::Tls(format!(
                "refusing the self-signed directory {shown}: it is {what}; {fix}"
            )));
        }
        Err(e) => return Err(Error::io(format!("open {shown}"))(e)),
    };
    let meta = d.metadata().map_err(Error::io(format!("stat {shown}")))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(Error::Tls(format!(
            "refusing the self-signed directory {shown}: it is owned by uid {}, not by this process (uid {uid}), so its owner could swap the key files; {fix}",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::Tls(format!(
            "refusing the self-signed directory {shown}: its mode {mode:04o} lets group or others add and rename files in it; run `chmod 700 {shown}` or {fix}"
        )));
    }
    if mode != 0o700 {
        d.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(format!("chmod 700 {shown}")))?;
    }
    Ok(())
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

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn private_dir_creates_0700_and_tightens_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("a/b");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let loose = tmp.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        set_mode(&loose, 0o755);
        private_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
    }

    #[test]
    fn private_dir_refuses_a_symlink_a_file_and_a_shared_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        set_mode(&real, 0o700);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(
            err.contains("is a symlink") && err.contains("--self-signed-dir"),
            "{err}"
        );

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        for shared in [0o777, 0o770, 0o1777] {
            set_mode(&real, shared);
            let err = private_dir(&real).unwrap_err().to_string();
            assert!(err.contains("chmod 700"), "{shared:o}: {err}");
            assert_eq!(mode(&real), shared, "a refused directory is left as it is");
        }
    }

    #[test]
    fn private_dir_refuses_a_dir_owned_by_someone_else() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        set_mode(&theirs, 0o700);
        // Only root can give a directory away; as anyone else there is nothing to test.
        if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_err() {
            return;
        }
        let err = private_dir(&theirs).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
