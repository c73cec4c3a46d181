//! A fake Fediverse server on 127.0.0.1 for federation tests: it serves actor documents and
//! objects from a map, records every request it gets, and signs deliveries to a server under
//! test with a real RSA key.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Reply, TestServer, agent};

/// One RSA key pair (public, private PEM) for every fake peer in a test binary: generating
/// one takes a moment.
fn shared_key() -> anyhow::Result<&'static (String, String)> {
    static KEY: OnceLock<Result<(String, String), String>> = OnceLock::new();
    make_key(&KEY)
}

/// Another key pair, for actors that rotate their key.
fn second_key() -> anyhow::Result<&'static (String, String)> {
    static KEY: OnceLock<Result<(String, String), String>> = OnceLock::new();
    make_key(&KEY)
}

fn make_key(
    cell: &'static OnceLock<Result<(String, String), String>>,
) -> anyhow::Result<&'static (String, String)> {
    cell.get_or_init(|| {
        activitypub_federation::http_signatures::generate_actor_keypair()
            .map(|pair| (pair.public_key, pair.private_key))
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request the fake peer received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub target: String,
    /// Body text.
    pub body: String,
}

/// A fake server on a free loopback port.
pub struct FakePeer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`, its name as a peer.
    pub domain: String,
    documents: Arc<Mutex<HashMap<String, Value>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakePeer {
    /// Starts serving, named by its IP address.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_as("127.0.0.1")
    }

    /// Starts serving on 127.0.0.1, named `host` in its URLs (`localhost` or `127.0.0.1`).
    pub fn start_as(host: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let documents: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (docs, log, flag) = (documents.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (docs, log) = (docs.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &docs, &log);
                });
            }
        });
        Ok(FakePeer {
            base: format!("http://{host}:{port}"),
            domain: format!("{host}:{port}"),
            documents,
            seen,
            stop,
        })
    }

    /// Serves `document` as ActivityPub JSON at `path` (with query, if any).
    pub fn serve(&self, path: &str, document: Value) {
        lock(&self.documents).insert(path.to_owned(), document);
    }

    /// Serves an actor document at `path` with the shared key and returns its id.
    pub fn add_actor(&self, path: &str, kind: &str) -> String {
        self.add_actor_with_key(path, kind, false)
    }

    /// Serves an actor document at `path` with the shared key, or with the second key when
    /// `rotated`, and returns its id.
    pub fn add_actor_with_key(&self, path: &str, kind: &str, rotated: bool) -> String {
        let id = format!("{}{path}", self.base);
        let key = if rotated { second_key() } else { shared_key() };
        let public_key = key.map(|k| k.0.clone()).unwrap_or_default();
        self.serve(
            path,
            json!({
                "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
                "id": id,
                "type": kind,
                "preferredUsername": path.trim_start_matches('/').replace('/', "_"),
                "inbox": format!("{id}/inbox"),
                "endpoints": {"sharedInbox": format!("{}/inbox", self.base)},
                "publicKey": {
                    "id": format!("{id}#main-key"),
                    "owner": id,
                    "publicKeyPem": public_key,
                },
            }),
        );
        id
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

/// Signs `activity` as its `actor` (an actor of a fake peer) and POSTs it to `path` on `server`.
pub fn deliver(server: &TestServer, path: &str, activity: &Value) -> anyhow::Result<Reply> {
    let body = activity.to_string();
    let headers = signed_headers(server, path, &body, activity, chrono::Utc::now())?;
    post(server, path, &body, &headers)
}

/// Like [`deliver`], signed with the second key.
pub fn deliver_with_rotated_key(
    server: &TestServer,
    path: &str,
    activity: &Value,
) -> anyhow::Result<Reply> {
    let body = activity.to_string();
    let headers = sign_with(
        server,
        path,
        &body,
        activity,
        chrono::Utc::now(),
        second_key()?,
    )?;
    post(server, path, &body, &headers)
}

/// The headers of a correctly signed POST of `body`, signed at `at`.
pub fn signed_headers(
    server: &TestServer,
    path: &str,
    body: &str,
    activity: &Value,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<(String, String)>> {
    sign_with(server, path, body, activity, at, shared_key()?)
}

fn sign_with(
    server: &TestServer,
    path: &str,
    body: &str,
    activity: &Value,
    at: chrono::DateTime<chrono::Utc>,
    key: &(String, String),
) -> anyhow::Result<Vec<(String, String)>> {
    let actor = activity["actor"].as_str().unwrap_or_default();
    let url = url::Url::parse(&server.url(path))?;
    let signed = rose_events::federation::signature::sign(
        "POST",
        &url,
        Some(body.as_bytes()),
        &format!("{actor}#main-key"),
        &key.1,
        at,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(vec![
        ("Host".into(), signed.host),
        ("Date".into(), signed.date),
        ("Digest".into(), signed.digest.unwrap_or_default()),
        ("Signature".into(), signed.signature),
    ])
}

/// POSTs `body` as ActivityPub JSON with extra headers.
pub fn post(
    server: &TestServer,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> anyhow::Result<Reply> {
    let mut request = agent()
        .post(&server.url(path))
        .set("Content-Type", "application/activity+json");
    for (name, value) in headers {
        request = request.set(name, value);
    }
    Reply::from_result(request.send_string(body))
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let port = self.domain.rsplit(':').next().unwrap_or_default();
        let _ = TcpStream::connect(format!("127.0.0.1:{port}"));
    }
}

fn serve_one(
    stream: TcpStream,
    documents: &Mutex<HashMap<String, Value>>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }

    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    lock(seen).push(Seen {
        method: method.clone(),
        target: target.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });

    let found = lock(documents).get(&target).cloned();
    let (status, text) = match (method.as_str(), found) {
        ("GET", Some(document)) => ("200 OK", document.to_string()),
        ("POST", _) => ("202 Accepted", String::new()),
        _ => ("404 Not Found", "{}".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/activity+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}
