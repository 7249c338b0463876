//! Keys, certificates and peers files: making them, loading them, naming
//! them by fingerprint.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why an identity or peers file could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists where keygen would write; it never overwrites.
    #[error("{0} already exists; keygen never overwrites a key (choose another --name or --out)")]
    Exists(PathBuf),
    /// A file holds no usable PEM key or certificate.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A new key could not be encoded.
    #[error("encoding the new key failed: {0}")]
    Encode(String),
    /// rcgen failed to make a key or certificate.
    #[error("generating the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, the id of a peer's
/// key. Pinning the key, not the certificate, survives re-issuing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`'s public key.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, String> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
        let spki = parsed.subject_public_key_info();
        let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Ok(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A private key and its certificate: who this host is.
#[derive(Debug)]
pub struct Identity {
    /// The certificate presented to peers.
    pub certificate: CertificateDer<'static>,
    /// The matching private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads a PEM private key and a PEM certificate.
    pub fn load(key: &Path, cert: &Path) -> Result<Self, IdentityError> {
        let key_pem = read(key)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::Invalid {
                path: key.to_path_buf(),
                message: format!("no PEM private key found ({e})"),
            })?;
        let certificate =
            load_certificates(cert)?
                .into_iter()
                .next()
                .ok_or_else(|| IdentityError::Invalid {
                    path: cert.to_path_buf(),
                    message: "no certificate found".into(),
                })?;
        Ok(Self {
            certificate,
            key: key_der,
        })
    }

    /// The fingerprint peers pin for this identity.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_certificate(&self.certificate)
            .expect("a loaded certificate was checked when it was loaded")
    }
}

/// Loads every certificate of a PEM file; at least one, all valid X.509.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read(path)?;
    let invalid = |message: String| IdentityError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate found".into()));
    }
    for cert in &certs {
        Fingerprint::of_certificate(cert).map_err(&invalid)?;
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The files written by [`generate`].
#[derive(Debug)]
pub struct GeneratedIdentity {
    /// `DIR/NAME.key`, mode 0600.
    pub key_path: PathBuf,
    /// `DIR/NAME.crt`.
    pub cert_path: PathBuf,
    /// The fingerprint of the new key.
    pub fingerprint: Fingerprint,
}

/// Generates an Ed25519 key and a self-signed certificate for `name` into
/// `dir`, refusing to overwrite anything.
pub fn generate(name: &str, dir: &Path) -> Result<GeneratedIdentity, IdentityError> {
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key_path = dir.join(format!("{name}.key"));
    let cert_path = dir.join(format!("{name}.crt"));
    for path in [&key_path, &cert_path] {
        if path.exists() {
            return Err(IdentityError::Exists(path.clone()));
        }
    }
    let key = generate_key()?;
    let params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    let cert = params.self_signed(&key)?;
    let fingerprint =
        Fingerprint::of_certificate(cert.der()).map_err(|message| IdentityError::Invalid {
            path: cert_path.clone(),
            message,
        })?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(GeneratedIdentity {
        key_path,
        cert_path,
        fingerprint,
    })
}

/// A new Ed25519 key, held as PKCS#8 v1 (RFC 5208): the form OpenSSL,
/// Python's cryptography and other common tools read. ring makes v2 (RFC
/// 5958, with the public key inside), which many of them refuse; the public
/// key is left out here, as it follows from the private one. Keys made as v2
/// by earlier versions still load.
fn generate_key() -> Result<rcgen::KeyPair, IdentityError> {
    let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| rcgen::Error::RingUnspecified)?;
    let invalid = |e: pkcs8::Error| IdentityError::Encode(e.to_string());
    let mut info = pkcs8::PrivateKeyInfoRef::try_from(v2.as_ref()).map_err(invalid)?;
    info.public_key = None;
    let v1 = pkcs8::der::Encode::to_der(&info).map_err(|e| invalid(e.into()))?;
    Ok(rcgen::KeyPair::try_from(v1)?)
}

fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => IdentityError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    file.write_all(content).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate("host-a", dir.path()).unwrap();
        let mode = std::fs::metadata(&made.key_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let identity = Identity::load(&made.key_path, &made.cert_path).unwrap();
        assert_eq!(identity.fingerprint(), made.fingerprint);
        assert!(made.fingerprint.to_string().starts_with("sha256:"));
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        generate("x", dir.path()).unwrap();
        let before = std::fs::read(dir.path().join("x.key")).unwrap();
        assert!(matches!(
            generate("x", dir.path()),
            Err(IdentityError::Exists(_))
        ));
        assert_eq!(std::fs::read(dir.path().join("x.key")).unwrap(), before);
    }

    #[test]
    fn garbage_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.crt");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = load_certificates(&path).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
