#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

//! Web Push jobs per second through the queue to a push endpoint on 127.0.0.1, with 1 and 2
//! worker loops. The baseline is the encryption-only rate measured in the same run: RFC 8291
//! aes128gcm with a fresh ECDH key per message and the VAPID header, with no network and no
//! database.
//!
//! Run: `cargo bench --bench delivery` (PostgreSQL from `ROSE_EVENTS_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`; a scratch database is created and dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use diesel::{Connection, PgConnection, RunQueryDsl};
use rose_events::db::{self, DbPool};
use rose_events::delivery::queue::{self, NewJob};
use rose_events::delivery::transport::web_push::{VapidKey, topic_for};
use rose_events::delivery::transport::{PushUrgency, WebPushTransport};
use rose_events::delivery::{Clock, SystemClock, Worker, WorkerSettings};
use rose_events::notify::jobs::{NotifyContext, PushJob, handlers};
use rose_events::notify::subscriptions::{self, BrowserKeys, BrowserSubscription};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const JOBS: usize = 3000;
const PAYLOAD: &str = r#"{"title":"Reminder: Atelier vélo","body":"Starts Thu 2 May 2030 19:00 (Europe/Paris)\nAtelier, 5 rue Haute","url":"https://events.example/calendars/velo#occurrence-1","tag":"x"}"#;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let endpoint = runtime.block_on(start_endpoint())?;
    let dir = tempfile::tempdir()?;
    let key = VapidKey::load_or_generate(dir.path())?;
    let keys = browser_keys()?;

    let one_thread = encryption_rate(&key, &endpoint, &keys, 1)?;
    let two_threads = encryption_rate(&key, &endpoint, &keys, 2)?;
    println!("encryption only: {one_thread:.0} messages/s on 1 thread, {two_threads:.0} on 2");
    let sent = runtime.block_on(send_rate(&key, &endpoint, &keys))?;
    println!(
        "encryption and HTTP to the endpoint, no database, 32 at a time: {sent:.0} messages/s, \
         {:.2} of the encryption-only rate on 2 threads",
        sent / two_threads
    );

    let server = std::env::var("ROSE_EVENTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    for (workers, baseline) in [(1, one_thread), (2, two_threads)] {
        let name = format!("rose_bench_delivery_{}_{workers}", std::process::id());
        let mut admin = PgConnection::establish(&format!("{server}/postgres"))?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
        let url = format!("{server}/{name}");
        let result = runtime.block_on(queue_rate(&url, &key, &endpoint, &keys, workers));
        diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin)?;
        let rate = result?;
        println!(
            "queue to push endpoint, PostgreSQL, {workers} worker loop(s): {rate:.0} jobs/s, \
             {:.2} of the encryption-only rate on {workers} thread(s)",
            rate / baseline
        );
    }
    Ok(())
}

/// Creates a P-256 key pair and auth secret as a browser does, keeping only the public half.
fn browser_keys() -> anyhow::Result<BrowserKeys> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = openssl::ec::EcKey::generate(&group)?;
    let mut context = openssl::bn::BigNumContext::new()?;
    let point = key.public_key().to_bytes(
        &group,
        openssl::ec::PointConversionForm::UNCOMPRESSED,
        &mut context,
    )?;
    let mut auth = [0_u8; 16];
    openssl::rand::rand_bytes(&mut auth)?;
    Ok(BrowserKeys {
        p256dh: URL_SAFE_NO_PAD.encode(point),
        auth: URL_SAFE_NO_PAD.encode(auth),
    })
}

/// Messages per second that `threads` threads encrypt and sign, as the transport does for
/// each send (cached VAPID token, fresh ECDH key and salt per message).
fn encryption_rate(
    key: &VapidKey,
    endpoint: &str,
    keys: &BrowserKeys,
    threads: usize,
) -> anyhow::Result<f64> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let transport = Arc::new(WebPushTransport::new(
        key.clone(),
        "mailto:ops@events.example",
        clock,
    )?);
    let per_thread = JOBS / threads;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let transport = transport.clone();
            let message = message(endpoint, keys);
            std::thread::spawn(move || -> Result<(), String> {
                for _ in 0..per_thread {
                    std::hint::black_box(transport.encrypt_only(&message)?);
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("encryption thread panicked"))?
            .map_err(anyhow::Error::msg)?;
    }
    Ok(f64::from(u32::try_from(per_thread * threads)?) / started.elapsed().as_secs_f64())
}

/// Messages per second sent straight through the transport, 32 in flight at a time, without
/// the queue: what the network part costs on top of encryption.
async fn send_rate(key: &VapidKey, endpoint: &str, keys: &BrowserKeys) -> anyhow::Result<f64> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let transport = Arc::new(WebPushTransport::new(
        key.clone(),
        "mailto:ops@events.example",
        clock,
    )?);
    let started = Instant::now();
    for _ in 0..JOBS / 32 {
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let transport = transport.clone();
            let message = message(endpoint, keys);
            sends.spawn(async move { transport.send(&message).await });
        }
        while let Some(result) = sends.join_next().await {
            anyhow::ensure!(
                result? == rose_events::delivery::transport::PushResult::Delivered,
                "the endpoint did not accept a message"
            );
        }
    }
    Ok(f64::from(u32::try_from(JOBS / 32 * 32)?) / started.elapsed().as_secs_f64())
}

fn message(endpoint: &str, keys: &BrowserKeys) -> rose_events::delivery::transport::PushMessage {
    rose_events::delivery::transport::PushMessage {
        endpoint: endpoint.to_owned(),
        p256dh: keys.p256dh.clone(),
        auth: keys.auth.clone(),
        payload: PAYLOAD.to_owned(),
        ttl: 3600,
        urgency: PushUrgency::Normal,
        topic: Some(topic_for("bench")),
    }
}

/// Jobs per second from enqueued to done with `workers` worker loops.
async fn queue_rate(
    url: &str,
    key: &VapidKey,
    endpoint: &str,
    keys: &BrowserKeys,
    workers: usize,
) -> anyhow::Result<f64> {
    let mut conn = db::connect(url)?;
    db::run_migrations(&mut conn)?;
    let now = Utc::now();
    let browser = BrowserSubscription {
        endpoint: endpoint.to_owned(),
        keys: keys.clone(),
        expiration_time: None,
    };
    let subscription = subscriptions::subscribe(&mut conn, "bench", &browser, true, now)?;
    for n in 0..JOBS {
        let dedup_key = format!("push/bench/{n}");
        let job = PushJob {
            subscription_id: subscription.id,
            endpoint: endpoint.to_owned(),
            payload: PAYLOAD.to_owned(),
            ttl: 3600,
            urgency: PushUrgency::Normal,
            topic: topic_for(&dedup_key),
        };
        let new = NewJob {
            kind: "push".to_owned(),
            dedup_key,
            payload: serde_json::to_value(&job)?,
            run_at: now,
            deadline: None,
            max_attempts: 8,
        };
        queue::enqueue(&mut conn, &new, now)?;
    }

    let pool: DbPool = db::create_pool(url, 8)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let push = Arc::new(WebPushTransport::new(
        key.clone(),
        "mailto:ops@events.example",
        clock.clone(),
    )?);
    let context = NotifyContext {
        pool: pool.clone(),
        public_url: "https://events.example".to_owned(),
        push: Some(push),
        email: None,
    };
    let handlers = handlers(&context, chrono::Duration::days(30));
    let settings = WorkerSettings {
        idle_poll: Duration::from_millis(5),
        ..WorkerSettings::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let worker = Worker::new(pool.clone(), handlers.clone(), clock.clone(), settings);
        let shutdown = shutdown.clone();
        loops.spawn(async move { worker.run_until(shutdown).await });
    }
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let pool = pool.clone();
        let done = tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            Ok(queue::count_by_state(&mut *pool.get()?)?[2])
        })
        .await??;
        if done >= JOBS as i64 {
            break;
        }
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    Ok(f64::from(u32::try_from(JOBS)?) / elapsed.as_secs_f64())
}

/// Starts a push endpoint on 127.0.0.1 that reads each request and responds 201, keeping the
/// connection open. Returns its URL.
async fn start_endpoint() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_connection(socket));
        }
    });
    Ok(format!("http://{address}/push/bench"))
}

async fn serve_connection(socket: tokio::net::TcpStream) -> std::io::Result<()> {
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
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
}
