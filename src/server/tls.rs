//! Optional native TLS on the listener (`[server.tls]`), for deployments without a reverse
//! proxy: providers dial `wss://` and check the certificate. rustls (ring) with the chain
//! and key read from PEM files; SIGHUP reloads both, so a renewed certificate is served to
//! new connections while live calls keep the TLS sessions they have. A reload that fails
//! (a half-written file, a key that does not match) keeps the certificate in use.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use crate::component::Errors;

/// Why the certificate or key could not be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of its kind.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("certificate {} with key {}: {reason}", cert.display(), key.display())]
    Pair {
        /// `cert_path`.
        cert: PathBuf,
        /// `key_path`.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// `[server.tls]` as written: both paths, or neither (plain HTTP).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_path: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<String>,
}

/// Validated `[server.tls]`.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The chain.
    pub cert_path: PathBuf,
    /// The key.
    pub key_path: PathBuf,
}

impl TlsConfig {
    /// `None` when TLS is off; both paths or neither.
    pub fn validate(self, errs: &mut Errors) -> Option<TlsSettings> {
        match (self.cert_path, self.key_path) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                errs.check(
                    !cert.trim().is_empty(),
                    "server.tls.cert_path",
                    "must name a file",
                );
                errs.check(
                    !key.trim().is_empty(),
                    "server.tls.key_path",
                    "must name a file",
                );
                Some(TlsSettings {
                    cert_path: cert.into(),
                    key_path: key.into(),
                })
            }
            (cert, _) => {
                let missing = if cert.is_none() {
                    "cert_path"
                } else {
                    "key_path"
                };
                errs.push(
                    &format!("server.tls.{missing}"),
                    "cert_path and key_path go together",
                );
                None
            }
        }
    }
}

/// The certificate being served, swapped whole on reload.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    /// Reads and checks both files.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(server_config(settings)?)),
            settings: settings.clone(),
        }))
    }

    /// Reads both files again; on success new connections get them, on failure nothing
    /// changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let next = Arc::new(server_config(&self.settings)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// An acceptor with the certificate in use now (taken once per connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn server_config(s: &TlsSettings) -> Result<rustls::ServerConfig, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| file_err(p, e));
    let pem = read(&s.cert_path)?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_reader_iter(BufReader::new(pem.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(&s.cert_path, e))?;
    if certs.is_empty() {
        return Err(file_err(&s.cert_path, "holds no PEM certificate"));
    }
    let pem = read(&s.key_path)?;
    // Never echo the key's bytes: only the kind of failure.
    let key = PrivateKeyDer::from_pem_reader(BufReader::new(pem.as_slice()))
        .map_err(|_| file_err(&s.key_path, "holds no PEM private key"))?;
    let pair = |reason: String| TlsError::Pair {
        cert: s.cert_path.clone(),
        key: s.key_path.clone(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| pair(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| pair(e.to_string()))?;
    // HTTP/1.1 only: the WebSocket upgrade is an HTTP/1.1 request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
