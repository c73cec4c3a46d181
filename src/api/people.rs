//! Routes for people: preferences, followed calendars, reminders for occurrences, and the
//! unsubscribe link of emails.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::{ApiError, AppState, require_token};
use crate::notify::check_person_id;
use crate::notify::people::{self, PreferencesChange};
use crate::notify::reminders::{self, OccurrenceRef};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/people/{id}", web::get().to(show))
        .route("/api/v1/people/{id}", web::put().to(update))
        .route("/api/v1/people/{id}/follows/{slug}", web::put().to(follow))
        .route(
            "/api/v1/people/{id}/follows/{slug}",
            web::delete().to(unfollow),
        )
        .route("/api/v1/people/{id}/reminders", web::post().to(remind))
        .route("/api/v1/people/{id}/reminders", web::delete().to(forget))
        .route("/unsubscribe/{token}", web::get().to(unsubscribe_form))
        .route("/unsubscribe/{token}", web::post().to(unsubscribe));
}

pub(super) fn person_id(path: &str) -> Result<String, ApiError> {
    check_person_id("id", path).map_err(ApiError::Invalid)?;
    Ok(path.to_owned())
}

async fn show(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = person_id(&path.into_inner())?;
    let body = state
        .with_conn(move |conn| {
            let person = people::find_or_default(conn, &id)?;
            let follows: Vec<String> = people::follows(conn, &id)?
                .into_iter()
                .map(|(_, slug)| slug)
                .collect();
            Ok(json!({ "person": person, "follows": follows }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn update(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    change: Json<PreferencesChange>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = person_id(&path.into_inner())?;
    let change = change.into_inner();
    let person = state
        .with_conn(move |conn| Ok(people::update(conn, &id, &change, Utc::now())?))
        .await?;
    Ok(HttpResponse::Ok().json(person))
}

async fn follow(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (id, slug) = path.into_inner();
    let id = person_id(&id)?;
    state
        .with_conn(move |conn| Ok(people::follow(conn, &id, &slug, Utc::now())?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn unfollow(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (id, slug) = path.into_inner();
    let id = person_id(&id)?;
    let shown = format!("person {id:?} does not follow calendar {slug:?}");
    let removed = state
        .with_conn(move |conn| Ok(people::unfollow(conn, &id, &slug)?))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(shown))
    }
}

/// One occurrence: the event and, for a recurring event, the recurrence id (the original
/// start as RFC 3339).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OccurrenceInput {
    event_id: i64,
    recurrence_id: Option<String>,
}

fn occurrence(input: &OccurrenceInput) -> Result<OccurrenceRef, ApiError> {
    let recurrence_id = match &input.recurrence_id {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::invalid(
                        "recurrence_id",
                        text,
                        format!("is not an RFC 3339 instant: {e}"),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    Ok(OccurrenceRef {
        event_id: input.event_id,
        recurrence_id,
        remote: false,
    })
}

async fn remind(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    input: Json<OccurrenceInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = person_id(&path.into_inner())?;
    let occurrence = occurrence(&input)?;
    let body = state
        .with_conn(move |conn| {
            let now = Utc::now();
            let created = reminders::schedule(conn, occurrence, &id, now)?;
            let list = reminders::jobs_of(conn, occurrence, &id)?;
            Ok(json!({ "created": created, "reminders": list }))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn forget(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    input: Json<OccurrenceInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = person_id(&path.into_inner())?;
    let occurrence = occurrence(&input)?;
    let removed = state
        .with_conn(move |conn| Ok(reminders::cancel(conn, occurrence, &id)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}

/// A confirmation page: a GET must not unsubscribe, because mail scanners follow links.
async fn unsubscribe_form(path: web::Path<String>) -> HttpResponse {
    let token = crate::notify::messages::escape_html(&path.into_inner());
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html>\n<html><body><form method=\"post\" action=\"/unsubscribe/{token}\">\
         <button>Stop emails from rose-events</button></form></body></html>\n"
        ))
}

async fn unsubscribe(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let found = state
        .with_conn(move |conn| Ok(people::unsubscribe(conn, &token, Utc::now())?))
        .await?;
    match found {
        Some(_) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("You will get no more emails.\n")),
        None => Err(ApiError::NotFound("unknown unsubscribe link".to_owned())),
    }
}
