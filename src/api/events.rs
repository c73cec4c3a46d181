//! Event routes: create, read, update and delete events, and override single occurrences.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::body::Json;
use super::event_json::{EventInput, event_from_input, event_output, parse_duration, parse_moment};
use super::{ApiError, AppState, require_token};
use chrono::{DateTime, Utc};

use crate::calendar::event::{EventStatus, NewEvent, NewOverride};
use crate::calendar::occurrence::occurrences;
use crate::calendar::store::{self, StoredEvent};
use crate::calendar::time::Window;
use crate::calendar::validate::check_event;
use crate::db::{AnyConnection, write_transaction};
use crate::federation::publish::{self, Change};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/calendars/{slug}/events", web::get().to(list))
        .route("/api/v1/calendars/{slug}/events", web::post().to(create))
        .route("/api/v1/events/{id}", web::get().to(show))
        .route("/api/v1/events/{id}", web::put().to(update))
        .route("/api/v1/events/{id}", web::delete().to(remove))
        .route(
            "/api/v1/events/{id}/overrides/{recurrence_id}",
            web::put().to(put_override),
        )
        .route(
            "/api/v1/events/{id}/overrides/{recurrence_id}",
            web::delete().to(delete_override),
        );
}

/// A change to one occurrence. Fields left out keep the series' values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideInput {
    #[serde(default)]
    cancelled: bool,
    start: Option<String>,
    duration: Option<String>,
    title: Option<String>,
    description: Option<String>,
    location: Option<String>,
    online_url: Option<String>,
    status: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug.into_inner();
    let public_url = state.public_url.clone();
    let body = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            let events = store::events_of_calendar(conn, calendar.id)?;
            Ok(events
                .iter()
                .map(|e| event_output(e, &calendar.slug, &public_url))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn create(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    input: Json<EventInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let public_url = state.public_url.clone();
    let body = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            let event = event_from_input(input.into_inner(), calendar.default_zone)?;
            check_event(&event).map_err(ApiError::Invalid)?;
            write_transaction(conn, |conn| {
                let stored = store::insert_event(conn, calendar.id, &event)?;
                publish::event_changed(
                    conn,
                    &public_url,
                    &stored,
                    &calendar.slug,
                    Change::Created,
                )?;
                Ok(event_output(&stored, &calendar.slug, &public_url))
            })
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/events/{}", body.id)))
        .json(body))
}

async fn show(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let public_url = state.public_url.clone();
    let body = state
        .with_conn(move |conn| {
            let (stored, slug) = load_event(conn, id)?;
            Ok(event_output(&stored, &slug, &public_url))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn update(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: Json<EventInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = id.into_inner();
    let public_url = state.public_url.clone();
    let body = state
        .with_conn(move |conn| {
            write_transaction(conn, |conn| {
                let (current, slug) = load_event(conn, id)?;
                let zone = calendar_zone(conn, current.calendar_id)?;
                let mut event = event_from_input(input.into_inner(), zone)?;
                if event.uid != current.event.uid && !event.uid.ends_with("@rose-events") {
                    return Err(ApiError::invalid("uid", &event.uid, "cannot be changed"));
                }
                // The uid is fixed at creation; an update keeps it and the overrides unless
                // the series start moved, which would orphan them.
                event.uid.clone_from(&current.event.uid);
                if event.schedule.start == current.event.schedule.start
                    && event.schedule.basis == current.event.schedule.basis
                {
                    event.overrides.clone_from(&current.event.overrides);
                }
                check_event(&event).map_err(ApiError::Invalid)?;
                crate::booking::follow::follow_event(conn, id, &event)?;
                let stored = store::replace_event(conn, id, &event)?;
                publish::event_changed(conn, &public_url, &stored, &slug, Change::Updated)?;
                Ok(event_output(&stored, &slug, &public_url))
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn remove(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = id.into_inner();
    let public_url = state.public_url.clone();
    state
        .with_conn(move |conn| {
            write_transaction(conn, |conn| {
                let (current, slug) = load_event(conn, id)?;
                if !store::delete_event(conn, id)? {
                    return Err(ApiError::NotFound(format!("event {id} not found")));
                }
                publish::event_deleted(conn, &public_url, id, current.calendar_id, &slug)?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn put_override(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    input: Json<OverrideInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (id, recurrence_id) = path.into_inner();
    let public_url = state.public_url.clone();
    let body = state
        .with_conn(move |conn| {
            write_transaction(conn, |conn| {
                let (current, slug) = load_event(conn, id)?;
                let mut event = current.event.clone();
                let change = override_from_input(&event, &recurrence_id, input.into_inner())?;
                let key = change.recurrence_id.to_utc(event.schedule.basis);
                if !is_instance(&event, key) {
                    return Err(ApiError::NotFound(format!(
                        "event {id} has no occurrence at {recurrence_id}: an override must name \
                         the original start of one of its occurrences"
                    )));
                }
                event
                    .overrides
                    .retain(|o| o.recurrence_id.to_utc(event.schedule.basis) != key);
                event.overrides.push(change);
                check_event(&event).map_err(|mut invalid| {
                    // The new override is the only one not checked before; name its fields as
                    // the request spelled them.
                    if let Some((_, field)) = invalid.field.split_once("].") {
                        invalid.field = field.to_owned();
                    }
                    ApiError::Invalid(invalid)
                })?;
                crate::booking::follow::follow_event(conn, id, &event)?;
                let stored = store::replace_event(conn, id, &event)?;
                publish::event_changed(conn, &public_url, &stored, &slug, Change::Updated)?;
                Ok(event_output(&stored, &slug, &public_url))
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn delete_override(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (id, recurrence_id) = path.into_inner();
    let public_url = state.public_url.clone();
    state
        .with_conn(move |conn| {
            write_transaction(conn, |conn| {
                let (current, slug) = load_event(conn, id)?;
                let mut event = current.event.clone();
                let basis = event.schedule.basis;
                let key = parse_moment("recurrence_id", &recurrence_id, basis)?.to_utc(basis);
                let before = event.overrides.len();
                event
                    .overrides
                    .retain(|o| o.recurrence_id.to_utc(basis) != key);
                if event.overrides.len() == before {
                    return Err(ApiError::NotFound(format!(
                        "event {id} has no override for {recurrence_id}"
                    )));
                }
                crate::booking::follow::follow_event(conn, id, &event)?;
                let stored = store::replace_event(conn, id, &event)?;
                publish::event_changed(conn, &public_url, &stored, &slug, Change::Updated)?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Whether the series itself (overrides aside) has an instance whose original start is `key`.
fn is_instance(event: &NewEvent, key: DateTime<Utc>) -> bool {
    let series = NewEvent {
        overrides: Vec::new(),
        ..event.clone()
    };
    let Some(to) = key.checked_add_signed(chrono::Duration::seconds(1)) else {
        return false;
    };
    let window = Window { from: key, to };
    occurrences(&series, window, 1).is_ok_and(|found| {
        found
            .occurrences
            .iter()
            .any(|occurrence| occurrence.recurrence_id.unwrap_or(occurrence.start) == key)
    })
}

fn override_from_input(
    event: &crate::calendar::event::NewEvent,
    recurrence_id: &str,
    input: OverrideInput,
) -> Result<NewOverride, ApiError> {
    let basis = event.schedule.basis;
    let recurrence_id = parse_moment("recurrence_id", recurrence_id, basis)?;
    let start = input
        .start
        .as_deref()
        .map(|text| super::event_json::parse_wall("start", text, basis))
        .transpose()?;
    let length = input
        .duration
        .as_deref()
        .map(|text| parse_duration("duration", text))
        .transpose()?;
    let mut details = event.details.clone();
    if let Some(title) = input.title {
        if title.trim().is_empty() {
            return Err(ApiError::invalid("title", &title, "must not be empty"));
        }
        details.title = title;
    }
    details.description = input.description.or(details.description);
    details.location = input.location.or(details.location);
    details.online_url = input.online_url.or(details.online_url);
    if let Some(text) = input.status.as_deref() {
        details.status = EventStatus::parse(text).ok_or_else(|| {
            ApiError::invalid("status", text, "must be confirmed, tentative or cancelled")
        })?;
    }
    if input.cancelled {
        details.status = EventStatus::Cancelled;
    }
    Ok(NewOverride {
        recurrence_id,
        start,
        basis: None,
        length,
        details: Some(details),
    })
}

/// Loads an event and its calendar's slug, or a 404.
pub(super) fn load_event(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<(StoredEvent, String), ApiError> {
    let stored = store::find_event(conn, id)?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    let calendar = store::find_calendar_by_id(conn, stored.calendar_id)?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    Ok((stored, calendar.slug))
}

pub(super) fn calendar_zone(
    conn: &mut AnyConnection,
    calendar_id: i64,
) -> Result<chrono_tz::Tz, ApiError> {
    let calendar = store::find_calendar_by_id(conn, calendar_id)?
        .ok_or_else(|| ApiError::NotFound(format!("calendar {calendar_id} not found")))?;
    Ok(calendar.default_zone)
}
