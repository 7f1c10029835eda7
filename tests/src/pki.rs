//! TLS material for tests: a CA, a server certificate for localhost, client certificates.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Paths of PEM files written by [`Pki::create`].
pub struct Pki {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server: (PathBuf, PathBuf),
    /// Client certificate and key "a".
    pub client_a: (PathBuf, PathBuf),
    /// Client certificate and key "b".
    pub client_b: (PathBuf, PathBuf),
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path
}

impl Pki {
    /// Creates a CA and certificates signed by it in `dir`.
    pub fn create(dir: &Path) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: with rcgen's default name on both, a leaf's issuer equals its
        // subject, and OpenSSL-based clients (curl) take it for self-signed.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "MyNumber Locker test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let leaf = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, stem);
            let cert = params.signed_by(&key, &ca).expect("leaf cert");
            (
                write(dir, &format!("{stem}.crt"), &cert.pem()),
                write(dir, &format!("{stem}.key"), &key.serialize_pem()),
            )
        };
        Pki {
            server: leaf(vec!["localhost".into(), "127.0.0.1".into()], "server"),
            client_a: leaf(vec!["client-a".into()], "client-a"),
            client_b: leaf(vec!["client-b".into()], "client-b"),
            ca: write(dir, "ca.crt", &ca.pem()),
        }
    }
}
