//! The HTTP server: pool, migrations, routes and graceful shutdown.

use std::io::Write;

use actix_web::{App, HttpServer, middleware};
use anyhow::Context;

use crate::api::{self, AppState};
use crate::config::Config;

/// Applies migrations and serves HTTP until interrupted.
pub fn serve(config: &Config) -> anyhow::Result<()> {
    drop(crate::cli::open_database(config)?);
    let pool = crate::db::create_pool(&config.database_url(), config.pool_size)?;
    let clock: std::sync::Arc<dyn crate::delivery::Clock> =
        std::sync::Arc::new(crate::delivery::SystemClock);
    let delivery = crate::notify::service::build(config, pool.clone(), &clock)?;
    let state = AppState {
        bookings: crate::booking::group::BookingService::new(pool.clone()),
        pool,
        public_url: config.public_url(),
        federation: config.federation(),
        vapid_public_key: delivery.vapid_public_key.clone(),
        allow_loopback_push: config.delivery.allow_loopback_push,
    };
    let workers = if delivery.workers > 0 {
        Some(crate::notify::service::WorkerThread::start(
            delivery, clock,
        )?)
    } else {
        tracing::info!("no delivery workers in this process: run `rose-events work`");
        None
    };
    let listen = config.listen;
    let system = actix_web::rt::System::new();
    let served = system.block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::Logger::new("%r %s %Dms").log_target("rose_events::http"))
                .configure(api::configure(state.clone()))
        })
        .bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
        announce(config);
        server.run().await.context("HTTP server failed")
    });
    if let Some(workers) = workers {
        workers.stop();
    }
    served
}

fn announce(config: &Config) {
    tracing::info!(listen = %config.listen, database = %crate::db::redact_password(&config.database_url()), "rose-events started");
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "rose-events listening on http://{}\n\
         writes need a token: run `cargo run -- token create` (or `rose-events token create`) \
         and send it as `Authorization: Bearer <token>`",
        config.listen
    );
}
