//! Mutual TLS 1.3 against pinned keys, no certificate authority.
//!
//! [`PinnedPeers`] is the daemon's client verifier: a client is accepted
//! exactly when its end-entity certificate's public key is one of the pinned
//! keys, and is known by the peer id it is pinned under. [`PinnedDaemon`] is
//! the command's server verifier: each connection expects one daemon, and
//! only that daemon's key is accepted, never the key of another daemon the
//! command also trusts. Signatures of the handshake are still verified, so
//! presenting a pinned certificate without its private key fails.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use super::identity::{Fingerprint, Identity};
use crate::protocol::ALPN;

/// A peer presented a key that is not pinned. Its message names the
/// fingerprint, so an operator can decide whether to pin it.
#[derive(Debug, thiserror::Error)]
#[error("unknown peer certificate {0}: its key is not in the peers file")]
pub struct UnknownPeer(pub Fingerprint);

/// A daemon presented another key than the one expected of it. Its message
/// names the fingerprint presented, so the command can say who answered.
#[derive(Debug, thiserror::Error)]
#[error("unexpected daemon certificate {0}: not the one expected at this address")]
pub struct UnexpectedDaemon(pub Fingerprint);

/// Finds the `sha256:` fingerprint that an [`UnknownPeer`] or
/// [`UnexpectedDaemon`] refusal put in a TLS error's text, so the one-line
/// message can name it plainly.
pub fn fingerprint_in(text: &str) -> Option<&str> {
    let start = text.find("sha256:")?;
    let candidate = text.get(start..start + "sha256:".len() + 64)?;
    candidate["sha256:".len()..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(candidate)
}

/// Why a set of peer keys cannot be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A certificate is not valid X.509.
    #[error("{0}")]
    Invalid(String),
    /// One key under two peer ids: which peer connects would depend on the
    /// order of loading, and a limit set on one id would not hold for a
    /// client that the other id names.
    #[error("peers {first} and {second} pin the same key {fingerprint}")]
    SharedKey {
        /// The key both pin.
        fingerprint: Fingerprint,
        /// The peer id it was pinned under first.
        first: String,
        /// The other peer id.
        second: String,
    },
}

/// The set of trusted peer keys, each with the peer id used in logs.
#[derive(Debug)]
pub struct PinnedPeers {
    peers: HashMap<Fingerprint, String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedPeers {
    /// Pins each certificate's key under its peer id. A key may come twice
    /// under one id (a file that lists it twice), never under two ids.
    pub fn new<'a>(
        peers: impl IntoIterator<Item = (String, &'a CertificateDer<'static>)>,
    ) -> Result<Self, PinError> {
        let mut pinned: HashMap<Fingerprint, String> = HashMap::new();
        for (name, cert) in peers {
            let fingerprint = Fingerprint::of_certificate(cert).map_err(PinError::Invalid)?;
            match pinned.get(&fingerprint) {
                Some(first) if *first != name => {
                    return Err(PinError::SharedKey {
                        fingerprint,
                        first: first.clone(),
                        second: name,
                    })
                }
                _ => pinned.insert(fingerprint, name),
            };
        }
        Ok(Self {
            peers: pinned,
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// Every pinned key with its peer id, in no particular order.
    pub fn pinned(&self) -> impl Iterator<Item = (&str, &Fingerprint)> {
        self.peers.iter().map(|(key, peer)| (peer.as_str(), key))
    }

    /// The peer id of `cert`, if its key is pinned.
    pub fn peer_id(&self, cert: &CertificateDer<'_>) -> Option<&str> {
        let fingerprint = Fingerprint::of_certificate(cert).ok()?;
        self.peers.get(&fingerprint).map(String::as_str)
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fingerprint = fingerprint_of(cert)?;
        match self.peers.contains_key(&fingerprint) {
            true => Ok(()),
            false => Err(refusal(UnknownPeer(fingerprint))),
        }
    }
}

/// The one key the daemon at an address must present. A command may trust
/// several daemons, but a connection is meant for one of them: were any
/// trusted key accepted, another daemon answering at that address (a wrong
/// address, a moved host) could confirm files it never received, and the
/// command would delete their sources.
#[derive(Debug)]
pub struct PinnedDaemon {
    fingerprint: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedDaemon {
    /// Pins the key of `cert`.
    pub fn new(cert: &CertificateDer<'_>) -> Result<Self, String> {
        Ok(Self {
            fingerprint: Fingerprint::of_certificate(cert)?,
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// The fingerprint of the pinned key.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fingerprint = fingerprint_of(cert)?;
        match fingerprint == self.fingerprint {
            true => Ok(()),
            false => Err(refusal(UnexpectedDaemon(fingerprint))),
        }
    }
}

fn fingerprint_of(cert: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
    Fingerprint::of_certificate(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// A refused certificate, carrying `why` so its text reaches the error.
fn refusal(why: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(why))))
}

/// The only crypto provider used: ring, chosen explicitly so no second
/// provider compiled in by a dependency can make rustls ambiguous.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

impl ServerCertVerifier for PinnedDaemon {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedPeers {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a TLS configuration could not be built (a key that does not match its
/// certificate, an unsupported key type).
#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsSetupError(String);

/// The daemon's TLS: present `identity`, require a pinned client.
pub fn server_crypto(
    identity: &Identity,
    peers: Arc<PinnedPeers>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsSetupError> {
    let err = |e: &dyn std::fmt::Display| TlsSetupError(e.to_string());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(peers)
        .with_single_cert(vec![identity.certificate.clone()], identity.key.clone_key())
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| err(&e))
}

/// The command's TLS for one connection: present `identity`, accept only
/// the `daemon` expected there.
pub fn client_crypto(
    identity: &Identity,
    daemon: Arc<PinnedDaemon>,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsSetupError> {
    let err = |e: &dyn std::fmt::Display| TlsSetupError(e.to_string());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .dangerous()
        .with_custom_certificate_verifier(daemon)
        .with_client_auth_cert(vec![identity.certificate.clone()], identity.key.clone_key())
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_found_in_error_text() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let text = format!("invalid peer certificate: Other(OtherError(UnknownPeer({fp})))");
        assert_eq!(fingerprint_in(&text), Some(fp.as_str()));
        assert_eq!(fingerprint_in("sha256:xyz"), None);
        assert_eq!(fingerprint_in("no fingerprint"), None);
    }

    fn certificate(name: &str) -> CertificateDer<'static> {
        let dir = tempfile::tempdir().unwrap();
        let made = crate::transport::identity::generate(name, dir.path()).unwrap();
        let mut certs = crate::transport::identity::load_certificates(&made.cert_path).unwrap();
        certs.remove(0)
    }

    #[test]
    fn one_key_is_pinned_under_one_peer_id_only() {
        let (a, b) = (certificate("a"), certificate("b"));
        let twice = [("alice".to_string(), &a), ("alice".to_string(), &a)];
        let peers = PinnedPeers::new(twice.into_iter().chain([("bob".to_string(), &b)])).unwrap();
        assert_eq!(peers.peer_id(&b), Some("bob"));
        let shared = [("alice".to_string(), &a), ("bob".to_string(), &a)];
        let err = PinnedPeers::new(shared).unwrap_err();
        let key = Fingerprint::of_certificate(&a).unwrap();
        assert_eq!(
            err.to_string(),
            format!("peers alice and bob pin the same key {key}")
        );
    }

    #[test]
    fn a_daemon_is_accepted_with_its_own_key_only() {
        let (a, b) = (certificate("a"), certificate("b"));
        let daemon = PinnedDaemon::new(&a).unwrap();
        let name = ServerName::try_from("realized").unwrap();
        let verify = |cert| daemon.verify_server_cert(cert, &[], &name, &[], UnixTime::now());
        assert!(verify(&a).is_ok());
        let refused = verify(&b).unwrap_err().to_string();
        let presented = Fingerprint::of_certificate(&b).unwrap().to_string();
        assert_eq!(fingerprint_in(&refused), Some(presented.as_str()));
    }
}
