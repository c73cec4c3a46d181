//! A scriptable ActivityPub inbox on 127.0.0.1 for delivery tests. It responds to POSTs with
//! scripted statuses (queued one-off statuses first, then per-path and default ones), can wait
//! before responding, and records what it received.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the inbox received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Path with query.
    pub path: String,
    /// Body text.
    pub body: String,
    /// Whether it carried a `Signature` header.
    pub signed: bool,
    /// The status of the response.
    pub status: u16,
}

#[derive(Default)]
struct Script {
    next: VecDeque<(u16, Option<u64>)>,
    by_path: HashMap<String, u16>,
    default: u16,
    delay: Duration,
    received: Vec<Received>,
}

/// The inbox server, stopped on drop.
pub struct TestInbox {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`, its name as a delivery domain.
    pub domain: String,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TestInbox {
    /// Starts an inbox that responds 202 to every POST.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let script = Arc::new(Mutex::new(Script {
            default: 202,
            ..Script::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, flag) = (script.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &shared);
                });
            }
        });
        Ok(TestInbox {
            base: format!("http://127.0.0.1:{port}"),
            domain: format!("127.0.0.1:{port}"),
            script,
            stop,
        })
    }

    /// Sets the response to the next POST (to any path): `status` and an optional
    /// `Retry-After` in seconds. Further calls queue further responses.
    pub fn answer_next(&self, status: u16, retry_after: Option<u64>) {
        lock(&self.script).next.push_back((status, retry_after));
    }

    /// Answers every POST without a queued answer or a path rule with `status`.
    pub fn answer_always(&self, status: u16) {
        lock(&self.script).default = status;
    }

    /// Answers every POST to `path` with `status`, before the queued answers.
    pub fn answer_path(&self, path: &str, status: u16) {
        lock(&self.script).by_path.insert(path.to_owned(), status);
    }

    /// Waits `delay` before answering each request, as a distant server would.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.script).delay = delay;
    }

    /// Returns the URL of an inbox at `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.script).received.clone()
    }

    /// Returns how many requests arrived.
    pub fn count(&self) -> usize {
        lock(&self.script).received.len()
    }
}

impl Drop for TestInbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.domain.as_str());
    }
}

fn serve_one(stream: TcpStream, script: &Mutex<Script>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // A client killed before it sent anything leaves an empty connection: not a request.
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (mut length, mut signed) = (0usize, false);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            signed |= name.eq_ignore_ascii_case("signature");
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let (status, retry_after, delay) = {
        let mut script = lock(script);
        let (status, retry_after) = match script.by_path.get(&path) {
            Some(status) => (*status, None),
            None => script.next.pop_front().unwrap_or((script.default, None)),
        };
        script.received.push(Received {
            path,
            body: String::from_utf8_lossy(&body).into_owned(),
            signed,
            status,
        });
        (status, retry_after, script.delay)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let retry = retry_after.map_or_else(String::new, |s| format!("Retry-After: {s}\r\n"));
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Scripted\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()
}
