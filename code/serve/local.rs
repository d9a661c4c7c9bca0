//! A server on a thread of its own, bound to a free port of the loopback interface, and
//! the few lines of HTTP/1.1 it takes to ask it something: what the load benchmark, the
//! fuzz run and the browser test use to talk to a real socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::oneshot;

use super::{router, AppState};

/// A running server; [`Running::stop`] (or dropping it) shuts it down gracefully.
pub struct Running {
    /// Where it listens (`127.0.0.1:<free port>`).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Running {
    /// Binds a free port of 127.0.0.1 and serves `state` on a Tokio runtime of
    /// `threads` threads. The port is bound before this returns, so a client may
    /// connect at once.
    pub fn start(state: AppState, threads: usize) -> Result<Running> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding a free port of 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, router(state))
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await
                        .context("serving")
                })
            })
            .context("starting the server's thread")?;
        Ok(Running {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops taking connections, finishes the requests in flight, and returns how the
    /// server ended.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the server's thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Sends one HTTP/1.1 request (`connection: close`) and returns the status and the body.
/// `body` with a content type is sent as it is; the answer must carry a
/// `content-length` or end with the connection (no chunked encoding).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, Vec<u8>)> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some((ctype, bytes)) = body {
        head.push_str(&format!(
            "content-type: {ctype}\r\ncontent-length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes())?;
    if let Some((_, bytes)) = body {
        c.write_all(bytes)?;
    }
    let mut out = Vec::new();
    c.read_to_end(&mut out)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: the answer has no end of headers"))?;
    let head = String::from_utf8_lossy(&out[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status in `{head}`"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("{method} {path}: a chunked answer (this client reads whole bodies only)");
    }
    Ok((status, out[split + 4..].to_vec()))
}
