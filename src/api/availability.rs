//! `GET /api/v1/availability`: a person's busy intervals in a window and, for a candidate
//! occurrence, the verdict a booking would get and why. Also the person's busy blocks.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::bookings::{check_attendee, check_local_attendee, occurrence_key};
use super::{ApiError, AppState, require_token};
use crate::availability::facts::{self, Target};
use crate::availability::freebusy::free_busy;
use crate::booking::{self, store};
use crate::calendar::time::Window;

/// Maximum free/busy window, in days.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// Maximum busy block length, in days.
pub const MAX_BLOCK_DAYS: i64 = 366;
/// Maximum busy block label length, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/availability", web::get().to(availability))
        .route(
            "/api/v1/attendees/{attendee}/busy",
            web::post().to(add_busy_block),
        )
        .route(
            "/api/v1/attendees/{attendee}/busy/{id}",
            web::delete().to(delete_busy_block),
        );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityQuery {
    attendee: String,
    from: String,
    to: String,
    event: Option<i64>,
    occurrence: Option<String>,
    seats: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusyBlockInput {
    start: String,
    end: String,
    label: Option<String>,
}

async fn availability(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AvailabilityQuery>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let query = query.into_inner();
    check_attendee(&query.attendee)?;
    let from = parse_instant("from", &query.from)?;
    let to = parse_instant("to", &query.to)?;
    if to <= from {
        return Err(ApiError::invalid("to", &query.to, "must be after from"));
    }
    if to - from > Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::over_limit(
            "to",
            &query.to,
            format!("window is longer than {MAX_WINDOW_DAYS} days"),
            format!("{MAX_WINDOW_DAYS} days"),
        ));
    }
    let seats = query.seats.unwrap_or(1);
    if !(1..=booking::MAX_SEATS_PER_REQUEST).contains(&seats) {
        return Err(ApiError::over_limit(
            "seats",
            seats,
            format!("must be 1 to {}", booking::MAX_SEATS_PER_REQUEST),
            booking::MAX_SEATS_PER_REQUEST,
        ));
    }
    let candidate = match (query.event, query.occurrence.as_deref()) {
        (Some(event), Some(occurrence)) => Some(occurrence_key(event, occurrence)?),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "occurrence",
                "",
                "is required together with event",
            ));
        }
        (None, Some(occurrence)) => {
            return Err(ApiError::invalid(
                "event",
                occurrence,
                "is required together with occurrence",
            ));
        }
    };
    let attendee = query.attendee;
    let body = state
        .with_conn(move |conn| {
            let now = Utc::now();
            let target = candidate
                .map(|key| candidate_target(conn, key, now))
                .transpose()?;
            let window = Window { from, to };
            let (busy, assessment) = free_busy(
                conn,
                &attendee,
                window,
                target.as_ref().map(|t| (t, seats)),
                now,
            )
            .map_err(booking::Error::from)?;
            let verdict = assessment.decision.map(|decision| {
                json!({
                    "event_id": candidate.map(|k| k.event_id),
                    "recurrence_id": candidate
                        .map(|k| k.recurrence_id.format("%Y%m%dT%H%M%SZ").to_string()),
                    "seats": seats,
                    "verdict": decision.verdict,
                    "reasons": decision.reasons,
                })
            });
            Ok(json!({
                "attendee": attendee,
                "from": from,
                "to": to,
                "busy": busy,
                "candidate": verdict,
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Builds the candidate occurrence as the rules see it, reading seats without locking.
fn candidate_target(
    conn: &mut crate::db::AnyConnection,
    key: booking::OccurrenceKey,
    now: DateTime<Utc>,
) -> Result<Target, ApiError> {
    let bookable = booking::occurrence::find(conn, key)?;
    let row = store::select_capacity_row(conn, key, false)?;
    let settings = facts::load_settings(conn, &[key.event_id])
        .map_err(booking::Error::from)?
        .remove(&key.event_id)
        .unwrap_or_default();
    let capacity = row
        .as_ref()
        .and_then(|r| r.capacity_override)
        .or(bookable.event.event.capacity)
        .map(i64::from);
    let mut fact = facts::local_occurrence(
        bookable.occurrence.start,
        bookable.occurrence.end,
        bookable.cancelled(),
        capacity,
        &settings,
    );
    if let Some(row) = &row {
        fact.seats_taken = i64::from(row.seats_taken);
        fact.seats_held = store::live_held_seats(conn, row.id, now)?;
    }
    Ok(Target {
        fact,
        capacity_id: row.map(|r| r.id),
    })
}

async fn add_busy_block(
    request: HttpRequest,
    state: web::Data<AppState>,
    attendee: web::Path<String>,
    input: Json<BusyBlockInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let attendee = attendee.into_inner();
    check_attendee(&attendee)?;
    check_local_attendee(&attendee)?;
    let input = input.into_inner();
    let start = parse_instant("start", &input.start)?;
    let end = parse_instant("end", &input.end)?;
    if end <= start {
        return Err(ApiError::invalid("end", &input.end, "must be after start"));
    }
    if end - start > Duration::days(MAX_BLOCK_DAYS) {
        return Err(ApiError::over_limit(
            "end",
            &input.end,
            format!("block is longer than {MAX_BLOCK_DAYS} days"),
            format!("{MAX_BLOCK_DAYS} days"),
        ));
    }
    if let Some(label) = input
        .label
        .as_deref()
        .filter(|l| l.chars().count() > MAX_LABEL_CHARS)
    {
        return Err(ApiError::over_limit(
            "label",
            label,
            format!("is longer than {MAX_LABEL_CHARS} characters"),
            MAX_LABEL_CHARS,
        ));
    }
    let label = input.label;
    let owner = attendee.clone();
    let id = state
        .with_conn(move |conn| {
            Ok(store::insert_busy_block(
                conn,
                &owner,
                start,
                end,
                label.as_deref(),
                Utc::now(),
            )?)
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "id": id,
        "attendee": attendee,
        "start": start,
        "end": end,
    })))
}

async fn delete_busy_block(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (attendee, id) = path.into_inner();
    check_attendee(&attendee)?;
    let deleted = state
        .with_conn(move |conn| Ok(store::delete_busy_block(conn, &attendee, id)?))
        .await?;
    if !deleted {
        return Err(ApiError::NotFound(format!("busy block {id} not found")));
    }
    Ok(HttpResponse::NoContent().finish())
}

fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid(
                field,
                text,
                "must be an RFC 3339 instant like 2026-05-05T17:00:00Z",
            )
        })
}
