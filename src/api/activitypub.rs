//! ActivityPub views of events: `GET /events/{id}` and one object per occurrence.
//!
//! A client that asks for `application/activity+json` (or the ld+json profile) gets the
//! FEP-8a8e `Event`; anyone else is sent to the JSON API representation.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDateTime, Utc};

use super::events::load_event;
use super::{ApiError, AppState};
use crate::calendar::occurrence::occurrences;
use crate::calendar::time::Window;
use crate::federation::objects::event::{Publisher, occurrence_object, series_object};
use crate::federation::published;
use crate::federation::{ACTIVITY_JSON, wants_activity_json};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/events/{id}", web::get().to(event)).route(
        "/events/{id}/occurrences/{recurrence_id}",
        web::get().to(occurrence),
    );
}

async fn event(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !asks_for_activity_json(&request) {
        return Ok(redirect_to_api(id));
    }
    let public_url = state.public_url.clone();
    let object = state
        .with_conn(move |conn| {
            let (stored, slug) = load_event(conn, id)?;
            let calendar_zone = super::events::calendar_zone(conn, stored.calendar_id)?;
            let publisher = Publisher {
                public_url: &public_url,
                calendar_slug: &slug,
                calendar_zone,
            };
            let seats = crate::booking::store::occurrence_seats(conn, stored.id)?;
            let mut object = series_object(&stored, &publisher, Utc::now(), &seats)
                .ok_or_else(|| ApiError::NotFound(format!("event {id} has no occurrences")))?;
            published::stamp(conn, &mut object)?;
            Ok(object)
        })
        .await?;
    Ok(activity_json(&object))
}

async fn occurrence(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, recurrence_text) = path.into_inner();
    if !asks_for_activity_json(&request) {
        return Ok(redirect_to_api(id));
    }
    let recurrence_id = NaiveDateTime::parse_from_str(&recurrence_text, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            ApiError::invalid(
                "recurrence_id",
                &recurrence_text,
                "must be a UTC time like 20260505T170000Z",
            )
        })?
        .and_utc();
    let public_url = state.public_url.clone();
    let object = state
        .with_conn(move |conn| {
            let (stored, slug) = load_event(conn, id)?;
            let calendar_zone = super::events::calendar_zone(conn, stored.calendar_id)?;
            let publisher = Publisher {
                public_url: &public_url,
                calendar_slug: &slug,
                calendar_zone,
            };
            // The occurrence may have been moved by an override, so search its original
            // start and every override's new start.
            let window = Window {
                from: chrono::DateTime::<Utc>::MIN_UTC,
                to: chrono::DateTime::<Utc>::MAX_UTC,
            };
            let found = occurrences_with_id(&stored.event, window, recurrence_id)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let occurrence = found.ok_or_else(|| {
                ApiError::NotFound(format!("event {id} has no occurrence {recurrence_text}"))
            })?;
            let seats = crate::booking::store::occurrence_seats(conn, stored.id)?;
            let mut object = occurrence_object(&stored, &occurrence, &publisher, &seats);
            published::stamp(conn, &mut object)?;
            Ok(object)
        })
        .await?;
    Ok(activity_json(&object))
}

fn occurrences_with_id(
    event: &crate::calendar::event::NewEvent,
    window: Window,
    recurrence_id: chrono::DateTime<Utc>,
) -> Result<
    Option<crate::calendar::occurrence::Occurrence>,
    crate::calendar::recurrence::RecurrenceError,
> {
    // Original starts are at most the series length away from the requested instant unless an
    // override moved them, so look near the instant first.
    let near = Window {
        from: recurrence_id - chrono::Duration::days(1),
        to: recurrence_id + chrono::Duration::days(1),
    };
    let found = occurrences(event, near, 10_000)?;
    if let Some(hit) = found
        .occurrences
        .into_iter()
        .find(|o| o.recurrence_id == Some(recurrence_id))
    {
        return Ok(Some(hit));
    }
    let everything = occurrences(event, window, 10_000)?;
    Ok(everything
        .occurrences
        .into_iter()
        .find(|o| o.recurrence_id == Some(recurrence_id)))
}

pub(super) fn asks_for_activity_json(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(wants_activity_json)
}

fn redirect_to_api(id: i64) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/api/v1/events/{id}")))
        .insert_header((header::VARY, "Accept"))
        .finish()
}

fn activity_json(object: &crate::federation::protocol::Event) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ACTIVITY_JSON)
        .insert_header((header::VARY, "Accept"))
        .json(object)
}
