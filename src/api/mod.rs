//! The HTTP API (actix-web): routes, request and response shapes, authentication and errors.
//!
//! Reads of calendars, events, the agenda and feeds need no token. Every write needs
//! `Authorization: Bearer <token>` with a token from `rose-events token create`.

mod activitypub;
mod agenda;
mod availability;
mod body;
mod bookings;
mod calendars;
pub mod error;
mod event_json;
mod events;
mod federation;
mod federation_admin;
mod ics;
mod page;
mod people;
mod push;
mod rsvps;

use actix_web::{HttpRequest, web};

use crate::db::{AnyConnection, DbPool};
pub use error::ApiError;

/// Largest JSON body accepted, in bytes.
pub const MAX_JSON_BODY_BYTES: usize = 256 * 1024;
/// Largest iCalendar upload accepted, in bytes.
pub const MAX_ICS_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Database connections.
    pub pool: DbPool,
    /// Public base URL without a trailing slash, for ids and links.
    pub public_url: String,
    /// Federation settings (public URL, trust policy, fetch limits, clock).
    pub federation: crate::federation::Settings,
    /// Decides booking commands; one per process so that requests for the same occurrence
    /// share transactions.
    pub bookings: std::sync::Arc<crate::booking::group::BookingService>,
    /// The VAPID public key, when Web Push is on.
    pub vapid_public_key: Option<String>,
    /// Whether push endpoints on loopback HTTP are accepted (tests only).
    pub allow_loopback_push: bool,
}

impl AppState {
    /// Runs blocking database work on the thread pool with a pooled connection.
    pub async fn with_conn<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(crate::db::Error::from)?;
            work(&mut conn)
        })
        .await?
    }
}

/// Registers every route; a host embedding rose-events calls this inside its own `App`.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(json_config())
            .app_data(query_config())
            .app_data(path_config())
            .app_data(web::PayloadConfig::new(MAX_ICS_BODY_BYTES))
            .configure(calendars::routes)
            .configure(events::routes)
            .configure(agenda::routes)
            .configure(ics::routes)
            .configure(activitypub::routes)
            .configure(federation::routes)
            .configure(federation_admin::routes)
            .configure(bookings::routes)
            .configure(availability::routes)
            .configure(push::routes)
            .configure(people::routes)
            .configure(rsvps::routes)
            .configure(page::routes)
            .default_service(web::to(not_found));
    }
}

async fn not_found(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.path()
    )))
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BODY_BYTES)
        .error_handler(|error, _request| {
            use actix_web::error::JsonPayloadError as E;
            let api_error = match &error {
                E::OverflowKnownLength { length, limit } => ApiError::TooLarge {
                    size: *length,
                    limit: *limit,
                },
                E::Overflow { limit } => ApiError::TooLarge {
                    size: limit + 1,
                    limit: *limit,
                },
                E::ContentType => {
                    ApiError::BadRequest("request body must be application/json".to_owned())
                }
                E::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
                other => ApiError::BadRequest(format!("cannot read JSON body: {other}")),
            };
            api_error.into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _request| {
        ApiError::BadRequest(format!("invalid query string: {error}")).into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, request| {
        ApiError::NotFound(format!("no resource at {}: {error}", request.path())).into()
    })
}

/// Rejects the request unless it carries a valid bearer token.
pub(crate) async fn require_token(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // The scheme name is case-insensitive (RFC 9110, section 11.1).
    let Some(token) = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim())
    else {
        return Err(ApiError::Unauthorized);
    };
    let token = token.to_owned();
    let valid = state
        .with_conn(move |conn| Ok(crate::auth::token_is_valid(conn, &token)?))
        .await?;
    if valid {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
