//! Builds the delivery side of the app from the settings: transports, handlers and worker
//! loops. `serve` runs the loops on a thread beside the HTTP server; `work` runs only them.

use std::sync::Arc;

use chrono::Duration;

use super::jobs::{NotifyContext, handlers};
use crate::config::{Config, DeliveryConfig};
use crate::db::{Backend, DbPool};
use crate::delivery::transport::web_push::{self, VapidKey};
use crate::delivery::transport::{EmailTransport, SmtpSettings, WebPushTransport};
use crate::delivery::{Clock, Handlers, Worker, WorkerSettings, cleanup};

/// Errors setting up delivery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Web Push cannot be set up.
    #[error(transparent)]
    Push(#[from] web_push::Error),
    /// Email cannot be set up.
    #[error(transparent)]
    Email(#[from] crate::delivery::transport::email::Error),
    /// The database failed.
    #[error(transparent)]
    Queue(#[from] crate::delivery::Error),
    /// The worker thread or runtime cannot start.
    #[error("cannot start the delivery workers: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The delivery side of an app.
#[derive(Clone)]
pub struct Delivery {
    /// Transports and links.
    pub context: NotifyContext,
    /// Handlers by job kind.
    pub handlers: Handlers,
    /// The VAPID public key when Web Push is on.
    pub vapid_public_key: Option<String>,
    /// Worker loop settings.
    pub settings: WorkerSettings,
    /// Worker loops to run.
    pub workers: u32,
}

/// Builds transports and handlers from the settings. The VAPID key is read from the data
/// directory, and created there on first start.
pub fn build(config: &Config, pool: DbPool, clock: &Arc<dyn Clock>) -> Result<Delivery, Error> {
    let settings = &config.delivery;
    let key = VapidKey::load_or_generate(&config.data_dir)?;
    let push = if let Some(subject) = &settings.vapid_subject {
        Some(Arc::new(WebPushTransport::new(
            key,
            subject,
            clock.clone(),
        )?))
    } else {
        tracing::info!("Web Push is off: set a VAPID subject to turn it on");
        None
    };
    let email = email_transport(settings)?;
    let context = NotifyContext {
        pool,
        public_url: config.public_url(),
        push: push.clone(),
        email,
    };
    let retention = Duration::days(i64::from(settings.job_retention_days));
    let mut workers = settings.workers;
    if Backend::of_url(&config.database_url()) == Backend::Sqlite && workers > 1 {
        tracing::warn!(
            requested = workers,
            "SQLite runs one worker loop; use PostgreSQL for more"
        );
        workers = 1;
    }
    let mut handlers = handlers(&context, retention);
    handlers.insert(
        crate::federation::deliver::KIND,
        Arc::new(crate::federation::deliver::DeliveryHandler::new(
            context.pool.clone(),
            config.federation(),
            settings.domain_policy(),
            clock.clone(),
        )),
    );
    federation_handlers(&mut handlers, &context);
    Ok(Delivery {
        handlers,
        context,
        vapid_public_key: push.map(|p| p.public_key().to_owned()),
        settings: WorkerSettings {
            lease: Duration::seconds(i64::from(settings.job_lease_seconds)),
            ..WorkerSettings::default()
        },
        workers,
    })
}

/// Registers the jobs that keep peers' copies of our events current: the hourly horizon run
/// and the seats-left Updates bookings enqueue.
fn federation_handlers(handlers: &mut crate::delivery::Handlers, context: &NotifyContext) {
    use crate::federation::refresh::{HORIZON_KIND, HorizonHandler, SEATS_KIND, SeatsHandler};

    let (pool, public_url) = (context.pool.clone(), context.public_url.clone());
    handlers.insert(
        HORIZON_KIND,
        Arc::new(HorizonHandler::new(pool.clone(), public_url.clone())),
    );
    handlers.insert(SEATS_KIND, Arc::new(SeatsHandler::new(pool, public_url)));
}

fn email_transport(settings: &DeliveryConfig) -> Result<Option<Arc<EmailTransport>>, Error> {
    let (Some(host), Some(from)) = (&settings.smtp_host, &settings.smtp_from) else {
        tracing::info!("email is off: set the SMTP host and sender address to turn it on");
        return Ok(None);
    };
    let transport = EmailTransport::new(&SmtpSettings {
        host: host.clone(),
        port: settings.smtp_port,
        security: settings.smtp_security,
        username: settings.smtp_username.clone(),
        password: settings.smtp_password.clone(),
        from: from.clone(),
    })?;
    Ok(Some(Arc::new(transport)))
}

/// Runs `delivery.workers` worker loops until `shutdown` turns true, after scheduling the
/// cleanup of finished jobs and the horizon run of federated occurrences.
pub async fn run_workers(
    delivery: Delivery,
    clock: Arc<dyn Clock>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let now = clock.now();
    crate::delivery::worker::run_blocking(delivery.context.pool.clone(), move |conn| {
        cleanup::schedule_next(conn, now)?;
        crate::federation::refresh::schedule_horizon(conn, now)
    })
    .await?;
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..delivery.workers {
        let worker = Worker::new(
            delivery.context.pool.clone(),
            delivery.handlers.clone(),
            clock.clone(),
            delivery.settings,
        );
        let shutdown = shutdown.clone();
        loops.spawn(async move { worker.run_until(shutdown).await });
    }
    while loops.join_next().await.is_some() {}
    Ok(())
}

/// Worker loops on their own thread and runtime, stopped by [`WorkerThread::stop`].
pub struct WorkerThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    /// Starts the loops on a new thread.
    pub fn start(delivery: Delivery, clock: Arc<dyn Clock>) -> Result<WorkerThread, Error> {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rose-events-worker")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("rose-events-delivery".to_owned())
            .spawn(move || {
                if let Err(error) = runtime.block_on(run_workers(delivery, clock, shutdown)) {
                    tracing::error!(error = %error, "delivery workers stopped");
                }
            })?;
        Ok(WorkerThread { stop, thread })
    }

    /// Lets the loops finish their batch, then waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        if self.thread.join().is_err() {
            tracing::error!("delivery thread panicked");
        }
    }
}
