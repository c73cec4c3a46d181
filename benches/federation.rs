#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

//! Federation throughput, each rate beside a bound measured in the same run:
//!
//! - (a) signed `Create{Event}` activities from a trusted peer accepted per second by the
//!   inbox of a release `rose-events serve` over HTTP on 127.0.0.1, against RSA-2048
//!   verifications per second on one core (`openssl speed -seconds 3 rsa2048`);
//! - (b) signed deliveries per second, the worker signing and POSTing to a fast inbox on
//!   127.0.0.1, against RSA-2048 signatures per second from the same `openssl speed` run;
//! - (c) deliveries per second to one inbox that waits 150 ms before each response, against
//!   sending one at a time (1 / 0.15 s).
//!
//! Run: `cargo bench --bench federation` (needs `openssl` on the PATH; PostgreSQL from
//! `ROSE_EVENTS_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`). Scratch databases are
//! created and dropped, and every server listens on 127.0.0.1 only.

use std::io::{BufRead, BufReader as StdBufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use diesel::{Connection, PgConnection, RunQueryDsl};
use rose_events::db::{self, DbPool};
use rose_events::delivery::domains::DomainPolicy;
use rose_events::delivery::{Clock, Handlers, SystemClock, Worker, WorkerSettings, queue};
use rose_events::federation::deliver::{self, DeliveryHandler};
use rose_events::federation::{Settings, TrustPolicy, actors, outbox, signature};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const PUBLIC_URL: &str = "https://events.example";
/// Activities posted to the inbox in (a).
const INBOX_ACTIVITIES: usize = 4_000;
/// Concurrent HTTP clients posting them.
const INBOX_CLIENTS: usize = 16;
/// Deliveries sent in (b).
const FAST_DELIVERIES: usize = 3_000;
/// Deliveries sent in (c), and the inbox's wait.
const SLOW_DELIVERIES: usize = 600;
const SLOW_INBOX_WAIT: Duration = Duration::from_millis(150);

fn main() -> anyhow::Result<()> {
    let (signs, verifies) = openssl_speed()?;
    println!("openssl speed rsa2048, one core: {signs:.0} signs/s, {verifies:.0} verifies/s");
    let server = std::env::var("ROSE_EVENTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());

    let accepted = with_database(&server, "inbox", inbox_rate)?;
    println!(
        "(a) inbox, signed Create{{Event}} from a trusted peer over HTTP, PostgreSQL: \
         {accepted:.0}/s, {:.3} of openssl verifies/s (target 0.25)",
        accepted / verifies
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let fast = with_database(&server, "fast", |url| {
        runtime.block_on(delivery_rate(url, FAST_DELIVERIES, Duration::ZERO))
    })?;
    println!(
        "(b) signed deliveries to a fast inbox, PostgreSQL, 1 worker loop: {fast:.0}/s, \
         {:.3} of openssl signs/s (target 0.3)",
        fast / signs
    );
    let slow = with_database(&server, "slow", |url| {
        runtime.block_on(delivery_rate(url, SLOW_DELIVERIES, SLOW_INBOX_WAIT))
    })?;
    let one_at_a_time = 1.0 / SLOW_INBOX_WAIT.as_secs_f64();
    println!(
        "(c) deliveries to one inbox answering after 150 ms: {slow:.1}/s, {:.1} times the \
         one-at-a-time rate of {one_at_a_time:.2}/s (target 6)",
        slow / one_at_a_time
    );
    Ok(())
}

/// Runs `openssl speed -seconds 3 rsa2048` and returns its signs and verifies per second.
fn openssl_speed() -> anyhow::Result<(f64, f64)> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .stderr(Stdio::null())
        .output()
        .context("cannot run openssl speed: is openssl on the PATH?")?;
    let text = String::from_utf8(output.stdout)?;
    let line = text
        .lines()
        .find(|line| line.starts_with("rsa 2048 bits"))
        .with_context(|| format!("no rsa 2048 line in openssl's output: {text}"))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers.as_slice() {
        [.., signs, verifies] => Ok((*signs, *verifies)),
        _ => bail!("cannot read the rates in {line:?}"),
    }
}

/// Creates a scratch database, runs `work` on its URL and drops the database.
fn with_database<T>(
    server: &str,
    label: &str,
    work: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = format!("rose_bench_federation_{label}_{}", std::process::id());
    let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let result = work(&format!("{server}/{name}"));
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin)?;
    result
}

// ---------------------------------------------------------------------------------------------
// (a) the inbox

/// Activities accepted per second by the inbox of a release server.
fn inbox_rate(url: &str) -> anyhow::Result<f64> {
    let key = openssl::rsa::Rsa::generate(2048)?;
    let key = openssl::pkey::PKey::from_rsa(key)?;
    let private_pem = String::from_utf8(key.private_key_to_pem_pkcs8()?)?;
    let public_pem = String::from_utf8(key.public_key_to_pem()?)?;
    let peer = ActorServer::start(&public_pem)?;
    let data_dir = tempfile::tempdir()?;
    let server = RoseServer::start(url, data_dir.path())?;
    cli(url, data_dir.path(), &["peer", "trust", &peer.domain])?;

    // Signing costs the client as much as verifying costs the server, so every request is
    // signed before the clock starts. Signatures stay valid for an hour.
    let inbox = url::Url::parse(&format!("{}/inbox", server.base))?;
    let mut requests = Vec::with_capacity(INBOX_ACTIVITIES + 1);
    for n in 0..=INBOX_ACTIVITIES {
        let body = create_event(&peer.base, n).to_string();
        let actor = format!("{}/users/org", peer.base);
        let headers = signature::sign(
            "POST",
            &inbox,
            Some(body.as_bytes()),
            &format!("{actor}#main-key"),
            &private_pem,
            Utc::now(),
        )
        .map_err(anyhow::Error::msg)?;
        requests.push((body, headers));
    }

    // The first one makes the server fetch the peer's actor; the rest find its key stored.
    let first = requests.remove(0);
    let status = post_signed(&ureq::agent(), inbox.as_str(), &first.0, &first.1)?;
    if status != 202 {
        bail!("the inbox responded with {status} to the first Create");
    }
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..INBOX_CLIENTS)
        .map(|_| {
            let (requests, next, accepted) = (requests.clone(), next.clone(), accepted.clone());
            let inbox = inbox.to_string();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::agent();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some((body, headers)) = requests.get(n) else {
                        return Ok(());
                    };
                    let status = post_signed(&agent, &inbox, body, headers)?;
                    if status != 202 {
                        bail!("the inbox responded with {status}");
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let elapsed = started.elapsed();
    drop(server);
    let accepted = u32::try_from(accepted.load(Ordering::SeqCst))?;
    Ok(f64::from(accepted) / elapsed.as_secs_f64())
}

fn create_event(peer: &str, n: usize) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{peer}/activities/create-{n}"),
        "type": "Create",
        "actor": format!("{peer}/users/org"),
        "object": {
            "id": format!("{peer}/events/{n}"),
            "type": "Event",
            "name": format!("Concert {n}"),
            "startTime": "2031-03-03T18:00:00+01:00",
            "endTime": "2031-03-03T20:00:00+01:00",
            "timezone": "Europe/Berlin",
            "location": {"type": "Place", "name": "Kulturhaus"},
            "updated": "2031-01-01T00:00:00Z",
        }
    })
}

fn post_signed(
    agent: &ureq::Agent,
    inbox: &str,
    body: &str,
    headers: &signature::SignedHeaders,
) -> anyhow::Result<u16> {
    let mut request = agent
        .post(inbox)
        .set("Content-Type", "application/activity+json")
        .set("Date", &headers.date)
        .set("Signature", &headers.signature);
    if let Some(digest) = &headers.digest {
        request = request.set("Digest", digest);
    }
    match request.send_string(body) {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response.status()),
        Err(error) => Err(error.into()),
    }
}

/// A release `rose-events serve` on a free port, killed on drop.
struct RoseServer {
    base: String,
    child: Child,
}

impl RoseServer {
    fn start(url: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rose-events"))
            .arg("serve")
            .env("ROSE_EVENTS_DATABASE_URL", url)
            .env("ROSE_EVENTS_DATA_DIR", data_dir)
            .env("ROSE_EVENTS_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROSE_EVENTS_LOG", "warn")
            .env("ROSE_EVENTS_POOL_SIZE", "16")
            .env("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = StdBufReader::new(stderr).lines();
        loop {
            let line = lines
                .next()
                .context("the server exited before listening")??;
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(RoseServer {
            base: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Drop for RoseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(url: &str, data_dir: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_rose-events"))
        .args(args)
        .env("ROSE_EVENTS_DATABASE_URL", url)
        .env("ROSE_EVENTS_DATA_DIR", data_dir)
        .env("ROSE_EVENTS_LOG", "warn")
        .output()?;
    if !output.status.success() {
        bail!(
            "rose-events {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The fake peer: serves its actor document, with the public key, for every GET.
struct ActorServer {
    base: String,
    domain: String,
}

impl ActorServer {
    fn start(public_pem: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let domain = listener.local_addr()?.to_string();
        let base = format!("http://{domain}");
        let id = format!("{base}/users/org");
        let document = json!({
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": id,
            "type": "Person",
            "preferredUsername": "org",
            "inbox": format!("{id}/inbox"),
            "publicKey": {"id": format!("{id}#main-key"), "owner": id, "publicKeyPem": public_pem},
        })
        .to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let _ = answer_get(stream, &document);
            }
        });
        Ok(ActorServer { base, domain })
    }
}

fn answer_get(mut stream: std::net::TcpStream, document: &str) -> std::io::Result<()> {
    let mut reader = StdBufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // A GET has no body: the request ends with its blank line.
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/activity+json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{document}",
        document.len()
    )?;
    stream.flush()
}

// ---------------------------------------------------------------------------------------------
// (b) and (c): the delivery worker

/// Deliveries per second from enqueued to done, `count` of them to one inbox that waits
/// `wait` before each response, with one worker loop at the default settings.
async fn delivery_rate(url: &str, count: usize, wait: Duration) -> anyhow::Result<f64> {
    let inbox = start_inbox(wait).await?;
    let mut conn = db::connect(url)?;
    db::run_migrations(&mut conn)?;
    let actor = actors::instance_id(PUBLIC_URL);
    // Makes the instance key now rather than in the first timed batch.
    outbox::signing_key(&mut conn, PUBLIC_URL, &actor)?;
    let id = format!("{PUBLIC_URL}/events/1#create-1");
    let activity = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": id,
        "type": "Create",
        "actor": actor,
        "object": {"id": format!("{PUBLIC_URL}/events/1"), "type": "Event", "name": "Concert"},
    });
    let inboxes: Vec<String> = (0..count)
        .map(|n| format!("{inbox}/users/{n}/inbox"))
        .collect();
    deliver::enqueue(&mut conn, &actor, &id, &activity, &inboxes, Utc::now())?;

    let pool: DbPool = db::create_pool(url, 8)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = Settings {
        public_url: PUBLIC_URL.to_owned(),
        policy: TrustPolicy::AllowList,
        allow_localhost: true,
        clock: rose_events::federation::Clock::System,
    };
    let mut handlers = Handlers::default();
    handlers.insert(
        deliver::KIND,
        Arc::new(DeliveryHandler::new(
            pool.clone(),
            settings,
            DomainPolicy::default(),
            clock.clone(),
        )),
    );
    let settings = WorkerSettings {
        idle_poll: Duration::from_millis(5),
        ..WorkerSettings::default()
    };
    let worker = Worker::new(pool.clone(), handlers, clock, settings);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(async move { worker.run_until(shutdown).await });
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let pool = pool.clone();
        let [pending, running, done, dead] = tokio::task::spawn_blocking(move || {
            queue::count_by_state(&mut *pool.get()?).map_err(anyhow::Error::from)
        })
        .await??;
        if dead > 0 {
            bail!("{dead} deliveries died");
        }
        if pending + running == 0 && done >= count as i64 {
            break;
        }
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    running.await?;
    Ok(f64::from(u32::try_from(count)?) / elapsed.as_secs_f64())
}

/// Starts an inbox on 127.0.0.1 that reads each request, waits `wait` and answers 202,
/// keeping connections open. Returns its base URL.
async fn start_inbox(wait: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_inbox_connection(socket, wait));
        }
    });
    Ok(format!("http://{address}"))
}

async fn serve_inbox_connection(
    socket: tokio::net::TcpStream,
    wait: Duration,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
}
