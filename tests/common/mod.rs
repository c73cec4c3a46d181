//! Shared test helpers: throwaway databases on both backends and a real server process.
//!
//! PostgreSQL tests use `ROSE_EVENTS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`),
//! create a database with a unique name and drop it afterwards. When PostgreSQL cannot be
//! reached the test fails with a message saying how to start it: nothing is skipped.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};

pub mod inbox;
pub mod peer;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    /// URL to give the server.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    /// Folder for SQLite files and server data.
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// Creates an empty database on `backend`.
    pub fn new(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres(),
        }
    }

    /// An empty SQLite database file.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = dir
            .path()
            .join("test.sqlite3")
            .to_string_lossy()
            .into_owned();
        Ok(TestDb {
            url,
            backend: Backend::Sqlite,
            dir,
            pg_name: None,
        })
    }

    /// An empty PostgreSQL database with a unique name.
    pub fn postgres() -> anyhow::Result<Self> {
        let server = pg_server_url();
        let name = format!(
            "rose_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            rand::random::<u32>()
        );
        let mut admin =
            PgConnection::establish(&format!("{server}/postgres")).with_context(|| {
                format!(
                    "PostgreSQL is not reachable at {server}: start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 or set ROSE_EVENTS_TEST_PG"
                )
            })?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
        Ok(TestDb {
            url: format!("{server}/{name}"),
            backend: Backend::Postgres,
            dir: tempfile::tempdir()?,
            pg_name: Some(name),
        })
    }

    /// Opens a migrated connection.
    pub fn connect(&self) -> anyhow::Result<rose_events::db::AnyConnection> {
        let mut conn = rose_events::db::connect(&self.url)?;
        rose_events::db::run_migrations(&mut conn)?;
        Ok(conn)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = &self.pg_name else { return };
        let server = pg_server_url();
        if let Ok(mut admin) = PgConnection::establish(&format!("{server}/postgres")) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

fn pg_server_url() -> String {
    std::env::var("ROSE_EVENTS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// Generates one test per backend from a function `fn(Backend) -> anyhow::Result<()>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() -> anyhow::Result<()> {
                    super::$name(super::common::Backend::Sqlite)
                }

                #[test]
                fn postgres() -> anyhow::Result<()> {
                    super::$name(super::common::Backend::Postgres)
                }
            }
        )*
    };
}

/// A `rose-events serve` process on a free loopback port, killed on drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A write token.
    pub token: String,
    /// The database it uses.
    pub db: TestDb,
    child: Child,
    env: Vec<(String, String)>,
    port: u16,
}

/// Path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rose-events"))
}

/// Runs the binary with the test database and returns its standard output.
pub fn run_cli(db: &TestDb, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let output = Command::new(binary())
        .args(args)
        .env("ROSE_EVENTS_DATABASE_URL", &db.url)
        .env("ROSE_EVENTS_DATA_DIR", db.dir.path())
        .env("ROSE_EVENTS_LOG", "warn")
        .output()
        .context("cannot run rose-events")?;
    Ok(output)
}

impl TestServer {
    /// Starts a server on a fresh database of `backend` and creates a token.
    pub fn start(backend: Backend) -> anyhow::Result<Self> {
        Self::start_with_env(backend, &[])
    }

    /// Starts a server like [`TestServer::start`] with extra environment variables.
    pub fn start_with_env(backend: Backend, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let db = TestDb::new(backend)?;
        let token_output = run_cli(&db, &["token", "create", "--label", "test"])?;
        if !token_output.status.success() {
            bail!(
                "token create failed: {}",
                String::from_utf8_lossy(&token_output.stderr)
            );
        }
        let token = String::from_utf8(token_output.stdout)?.trim().to_owned();
        let port = free_port()?;
        let child = spawn_server(&db, env, port)?;
        Ok(TestServer {
            base: format!("http://127.0.0.1:{port}"),
            token,
            db,
            child,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port,
        })
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the server again on the same database, port and settings, after [`Self::crash`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.child = spawn_server(&self.db, &env, self.port)?;
        Ok(())
    }

    /// A full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with a JSON body and the write token.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Reply> {
        let request = agent()
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {}", self.token));
        Reply::from_result(request.send_json(body.clone()))
    }

    /// Sends a request without a body (a GET or DELETE, say) with the write token.
    pub fn send(&self, method: &str, path: &str) -> anyhow::Result<Reply> {
        let request = agent()
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {}", self.token));
        Reply::from_result(request.call())
    }

    /// Sends a GET without a token.
    pub fn get(&self, path: &str) -> anyhow::Result<Reply> {
        Reply::from_result(agent().get(&self.url(path)).call())
    }

    /// Sends a GET with an `Accept` header.
    pub fn get_accept(&self, path: &str, accept: &str) -> anyhow::Result<Reply> {
        Reply::from_result(agent().get(&self.url(path)).set("Accept", accept).call())
    }

    /// Sends a POST that declares a body of `length` bytes but sends none of it, and returns
    /// the raw response. A server must reject an oversized body from the declared length alone.
    pub fn announce_body(
        &self,
        path: &str,
        content_type: &str,
        length: usize,
    ) -> anyhow::Result<String> {
        use std::io::{Read, Write};

        let address = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n",
            self.token
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }

    /// Uploads an iCalendar body into a calendar.
    pub fn upload_ics(&self, slug: &str, bytes: &[u8]) -> anyhow::Result<Reply> {
        let request = agent()
            .post(&self.url(&format!("/api/v1/calendars/{slug}/import")))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "text/calendar");
        Reply::from_result(request.send_bytes(bytes))
    }
}

/// Starts `rose-events serve` on `db` and loopback `port`, and waits until it listens.
fn spawn_server(db: &TestDb, env: &[(&str, &str)], port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new(binary())
        .arg("serve")
        .env("ROSE_EVENTS_DATABASE_URL", &db.url)
        .env("ROSE_EVENTS_DATA_DIR", db.dir.path())
        .env("ROSE_EVENTS_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROSE_EVENTS_LOG", "warn")
        .env("ROSE_EVENTS_POOL_SIZE", "4")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start rose-events serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
            eprintln!("[server] {line}");
        }
    });
    let started = Instant::now();
    while ready_rx.recv_timeout(Duration::from_millis(100)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("server exited early with {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("server did not start within 30 s");
        }
    }
    Ok(child)
}

/// A further server process on the same database as a [`TestServer`], killed on drop.
pub struct ExtraServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
}

impl TestServer {
    /// Starts another server process on this server's database.
    pub fn another_process(&self) -> anyhow::Result<ExtraServer> {
        let port = free_port()?;
        let child = spawn_server(&self.db, &[], port)?;
        Ok(ExtraServer {
            base: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Drop for ExtraServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, content type and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type header.
    pub content_type: String,
    /// Location header, if any.
    pub location: Option<String>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// Reads a ureq result, keeping 4xx and 5xx responses.
    pub fn from_result(result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Self> {
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(other) => return Err(other.into()),
        };
        Ok(Reply {
            status: response.status(),
            content_type: response
                .header("Content-Type")
                .unwrap_or_default()
                .to_owned(),
            location: response.header("Location").map(str::to_owned),
            body: response.into_string()?,
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("response body is not JSON: {}", self.body))
    }
}

/// An HTTP agent with a timeout that does not follow redirects.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
