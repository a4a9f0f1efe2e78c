//! The TLS listener (`M_TLS_CERT` + `M_TLS_KEY`, PEM files; rustls with ring). Connections are
//! accepted and their handshakes run on their own tasks, so a slow client holds up nobody; the
//! router sees finished TLS streams. A client that speaks plain HTTP to the TLS port gets an
//! answer in plain HTTP: a GET or HEAD is redirected (308) to the same URL over `https://`,
//! anything else is a 403 `https_required`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// How long a client may take to start and finish its handshake (or send its plain request).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted but not yet through their handshake, at most.
const MAX_HANDSHAKES: usize = 1024;

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    crate::auth::install_crypto_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("M_TLS_CERT `{cert}`: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("M_TLS_CERT `{cert}`: {e}"))?;
    if chain.is_empty() {
        return Err(format!("M_TLS_CERT `{cert}` holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("M_TLS_KEY `{key}`: {e}"))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("M_TLS_CERT / M_TLS_KEY: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Finished TLS connections, for `axum::serve`.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `listener`; `production` adds HSTS to the plain-HTTP answers.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>, production: bool) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(256);
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                // At most MAX_HANDSHAKES connections between accept and a finished handshake:
                // beyond that, new connections wait in the kernel's backlog.
                let Ok(permit) = handshakes.clone().acquire_owned().await else { break };
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // The server stopped: release the port.
                    () = tx.closed() => break,
                };
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handle(stream, peer, acceptor, tx, production)).await;
                    drop(permit);
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    production: bool,
) {
    let mut first = [0u8; 1];
    // A TLS connection starts with a handshake record (content type 22).
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == 0x16 => match acceptor.accept(stream).await {
            Ok(tls) => {
                let _ = tx.send((tls, peer)).await;
            }
            Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        },
        Ok(1) => plain_http(stream, production).await,
        _ => {}
    }
}

/// Answer plain-HTTP requests on the TLS port with a redirect or a refusal.
async fn plain_http(stream: TcpStream, production: bool) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
        let host = req.headers().get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut res = super::edge::secure(super::edge::to_https(req.method(), host, path), production);
        res.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        Ok::<Response<Body>, std::convert::Infallible>(res)
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(io, service).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it never does on its own): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
