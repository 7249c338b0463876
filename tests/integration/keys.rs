//! Keys made by `realize keygen` are read by the tools people already use,
//! and keys made by earlier versions keep working.

use std::path::Path;
use std::process::Command;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use tempfile::TempDir;

use crate::harness::*;

/// The committed test keys of `certs/`, made by `realize keygen` when it
/// wrote PKCS#8 v2 (RFC 5958, public key inside), which OpenSSL 3 refuses.
const OLD_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/test-client");

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (.ci/deps installs it)")
}

#[test]
#[ignore = "needs openssl (.ci/deps installs it)"]
fn openssl_reads_a_fresh_key_and_finds_the_certificate_s_public_key() {
    let keys = Keys::generate(&["host"]);
    let key = keys.key("host");
    let key = key.to_str().unwrap();
    let out = openssl(&["pkey", "-in", key, "-noout"]);
    assert!(out.status.success(), "openssl pkey: {}", stderr(&out));
    // The public key OpenSSL derives from the key file is the one the
    // certificate carries: its SHA-256 is the printed fingerprint.
    let out = openssl(&["pkey", "-in", key, "-pubout", "-outform", "DER"]);
    assert!(
        out.status.success(),
        "openssl pkey -pubout: {}",
        stderr(&out)
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, &out.stdout);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(format!("sha256:{hex}"), keys.fingerprint("host"));
}

#[test]
fn a_key_made_as_pkcs8_v2_still_works_on_both_sides() {
    let pem = std::fs::read(format!("{OLD_KEY}.key")).unwrap();
    let der = PrivateKeyDer::from_pem_slice(&pem).unwrap();
    let info = pkcs8::PrivateKeyInfoRef::try_from(der.secret_der()).unwrap();
    assert!(
        info.public_key.is_some(),
        "{OLD_KEY}.key must stay PKCS#8 v2"
    );
    let keys = Keys::generate(&["new"]);
    for ext in ["key", "crt"] {
        std::fs::copy(
            format!("{OLD_KEY}.{ext}"),
            keys.dir.path().join(format!("old.{ext}")),
        )
        .unwrap();
    }
    // The old key as the command's identity, then as the daemon's.
    for (client, daemon_name) in [("old", "new"), ("new", "old")] {
        let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        write_file(src.path(), "f", b"data");
        let daemon = Daemon::start(&keys, daemon_name, &[("d", dst.path())], &[client]);
        let args = to_daemon(&keys, src.path(), &daemon, "d", client, daemon_name);
        let out = realize().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{client} -> {daemon_name}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(dst.path().join("f")).unwrap(), b"data");
        assert!(!Path::new(&src.path().join("f")).exists());
    }
}
