//! Booking routes: book, hold, confirm, cancel, waitlist, per-occurrence capacity and
//! per-event booking settings.
//!
//! Every write needs a bearer token. A booking or confirmation may carry an `Idempotency-Key`
//! header, scoped to the token: the same key with the same request returns the first result,
//! with another request 422, and while the first is still running 409.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::{ApiError, AppState, MAX_JSON_BODY_BYTES, require_token};
use crate::availability::facts::EventSettings;
use crate::booking::apply::Answer;
use crate::booking::group::BookingService;
use crate::booking::idempotency::{self, Claim};
use crate::booking::{self, BookRequest, Command, OccurrenceKey, Outcome, Verdict, store};

/// Largest capacity an occurrence may be given.
pub const MAX_CAPACITY: i64 = 1_000_000;
/// Most bookings listed per response.
pub const MAX_LISTED_BOOKINGS: i64 = 1_000;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let occurrence = "/api/v1/events/{id}/occurrences/{recurrence_id}";
    cfg.route(&format!("{occurrence}/bookings"), web::post().to(book))
        .route(
            &format!("{occurrence}/bookings"),
            web::get().to(list_occurrence),
        )
        .route(
            &format!("{occurrence}/capacity"),
            web::put().to(set_capacity),
        )
        .route(
            "/api/v1/events/{id}/booking-settings",
            web::put().to(put_settings),
        )
        .route("/api/v1/bookings/{id}", web::get().to(show))
        .route("/api/v1/bookings/{id}", web::delete().to(cancel))
        .route("/api/v1/holds/{id}/confirm", web::post().to(confirm))
        .route(
            "/api/v1/attendees/{attendee}/bookings",
            web::get().to(list_attendee),
        );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingInput {
    attendee: String,
    #[serde(default = "one_seat")]
    seats: i64,
    hold_seconds: Option<i64>,
    #[serde(default = "yes")]
    waitlist: bool,
}

fn one_seat() -> i64 {
    1
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmInput {
    order: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityInput {
    /// Seats for this occurrence, or `null` for the event's capacity. The field is required,
    /// so that a body without it is rejected rather than read as `null`.
    #[serde(deserialize_with = "nullable")]
    capacity: Option<i64>,
}

/// Reads a value that may be `null`. A field read with it, unlike a plain `Option`, is
/// required.
fn nullable<'de, D: serde::Deserializer<'de>>(input: D) -> Result<Option<i64>, D::Error> {
    Option::<i64>::deserialize(input)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsInput {
    #[serde(default)]
    buffer_before_seconds: i64,
    #[serde(default)]
    buffer_after_seconds: i64,
    opens_before_seconds: Option<i64>,
    #[serde(default)]
    closes_before_seconds: i64,
    #[serde(default)]
    waitlist: bool,
}

fn service(state: &AppState) -> Arc<BookingService> {
    Arc::clone(&state.bookings)
}

async fn book(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let key = occurrence_key(path.0, &path.1)?;
    let input: BookingInput = parse_json(&body)?;
    check_booking_input(&input)?;
    let claim = claim_for(&request, &body, 201)?;
    let command = Command::Book(BookRequest {
        attendee: input.attendee,
        seats: input.seats,
        hold_seconds: input.hold_seconds,
        waitlist: input.waitlist,
        idempotency: claim,
    });
    let answer = service(&state).submit(key, command).await?;
    Ok(answer_response(answer, 201))
}

async fn confirm(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = id.into_inner();
    let input: ConfirmInput = parse_json(&body)?;
    let length = input.order.chars().count();
    if length == 0 || length > booking::MAX_ORDER_REF_CHARS {
        return Err(ApiError::over_limit(
            "order",
            &input.order,
            format!("must be 1 to {} characters", booking::MAX_ORDER_REF_CHARS),
            booking::MAX_ORDER_REF_CHARS,
        ));
    }
    let claim = claim_for(&request, &body, 200)?;
    let held = find_booking(&state, id).await?;
    let command = Command::Confirm {
        booking_id: id,
        order_ref: input.order,
        idempotency: claim,
    };
    let answer = service(&state).submit(key_of(&held), command).await?;
    Ok(answer_response(answer, 200))
}

async fn cancel(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let id = id.into_inner();
    let existing = find_booking(&state, id).await?;
    let command = Command::Cancel { booking_id: id };
    let answer = service(&state).submit(key_of(&existing), command).await?;
    Ok(answer_response(answer, 200))
}

async fn set_capacity(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    input: Json<CapacityInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let key = occurrence_key(path.0, &path.1)?;
    if let Some(capacity) = input.capacity.filter(|c| !(0..=MAX_CAPACITY).contains(c)) {
        return Err(ApiError::over_limit(
            "capacity",
            capacity,
            format!("must be 0 to {MAX_CAPACITY}"),
            MAX_CAPACITY,
        ));
    }
    let command = Command::SetCapacity {
        capacity: input.capacity,
    };
    let answer = service(&state).submit(key, command).await?;
    Ok(answer_response(answer, 200))
}

async fn put_settings(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: Json<SettingsInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let event_id = id.into_inner();
    let settings = settings_from_input(&input)?;
    state
        .with_conn(move |conn| {
            if crate::calendar::store::find_event(conn, event_id)?.is_none() {
                return Err(ApiError::NotFound(format!("event {event_id} not found")));
            }
            store::save_settings(conn, event_id, &settings, Utc::now())?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}

async fn show(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let found = find_booking(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(found))
}

async fn list_attendee(
    request: HttpRequest,
    state: web::Data<AppState>,
    attendee: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let attendee = attendee.into_inner();
    check_attendee(&attendee)?;
    let list = state
        .with_conn(move |conn| {
            Ok(store::bookings_of_attendee(
                conn,
                &attendee,
                MAX_LISTED_BOOKINGS,
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "bookings": list })))
}

async fn list_occurrence(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let key = occurrence_key(path.0, &path.1)?;
    let body = state
        .with_conn(move |conn| {
            let bookable = booking::occurrence::find(conn, key)?;
            let row = store::select_capacity_row(conn, key, false)?;
            let (capacity_override, seats_taken, held, list) = match row {
                Some(row) => (
                    row.capacity_override,
                    i64::from(row.seats_taken),
                    store::live_held_seats(conn, row.id, Utc::now())?,
                    store::bookings_of_occurrence(conn, row.id, MAX_LISTED_BOOKINGS)?,
                ),
                None => (None, 0, 0, vec![]),
            };
            let capacity = capacity_override
                .or(bookable.event.event.capacity)
                .map(i64::from);
            Ok(json!({
                "event_id": key.event_id,
                "recurrence_id": recurrence_text(key.recurrence_id),
                "cancelled": bookable.cancelled(),
                "capacity": capacity,
                "capacity_override": capacity_override,
                "seats_taken": seats_taken,
                "seats_held": held,
                "seats_left": capacity.map(|c| (c - seats_taken - held).max(0)),
                "bookings": list,
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Builds the response for a command's result: a success status for a granted verdict, 409
/// with a problem body for a refusal, and the stored status and body for a replay.
fn answer_response(answer: Answer, success_status: u16) -> HttpResponse {
    match answer {
        Answer::Replayed(stored) => {
            let status = actix_web::http::StatusCode::from_u16(stored.status)
                .unwrap_or(actix_web::http::StatusCode::OK);
            HttpResponse::build(status)
                .content_type("application/json")
                .insert_header(("Idempotent-Replayed", "true"))
                .body(stored.body)
        }
        Answer::Decided(outcome) => outcome_response(&outcome, success_status),
    }
}

fn outcome_response(outcome: &Outcome, success_status: u16) -> HttpResponse {
    let granted = outcome.succeeded()
        || (outcome.verdict == Verdict::Cancelled)
        || (outcome.verdict == Verdict::Booked && outcome.booking.is_none());
    if granted {
        let status = if outcome.verdict == Verdict::Waitlisted {
            actix_web::http::StatusCode::ACCEPTED
        } else {
            actix_web::http::StatusCode::from_u16(success_status)
                .unwrap_or(actix_web::http::StatusCode::OK)
        };
        let mut response = HttpResponse::build(status);
        if let Some(booking) = &outcome.booking {
            response.insert_header((header::LOCATION, format!("/api/v1/bookings/{}", booking.id)));
        }
        return response.json(outcome);
    }
    let reason = outcome.reasons.first().map_or("refused", |r| r.as_str());
    let mut body = json!({
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": format!("the request was not granted: {reason}"),
    });
    if let (Some(target), Ok(serde_json::Value::Object(fields))) =
        (body.as_object_mut(), serde_json::to_value(outcome))
    {
        target.extend(fields);
    }
    HttpResponse::Conflict()
        .content_type("application/problem+json")
        .body(body.to_string())
}

async fn find_booking(state: &AppState, id: i64) -> Result<booking::Booking, ApiError> {
    state
        .with_conn(move |conn| {
            store::find_booking(conn, id)?
                .ok_or_else(|| ApiError::NotFound(format!("booking {id} not found")))
        })
        .await
}

fn key_of(found: &booking::Booking) -> OccurrenceKey {
    OccurrenceKey {
        event_id: found.event_id,
        recurrence_id: found.recurrence_id,
    }
}

/// Builds the idempotency claim of a request that carries an `Idempotency-Key` header.
fn claim_for(
    request: &HttpRequest,
    body: &[u8],
    success_status: u16,
) -> Result<Option<Claim>, ApiError> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "(not text)", "must be visible ASCII"))?;
    idempotency::check_key(key).map_err(|problem| {
        ApiError::over_limit("Idempotency-Key", key, problem, idempotency::MAX_KEY_BYTES)
    })?;
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    Ok(Some(Claim {
        caller: crate::auth::hash_token(token),
        key: key.to_owned(),
        fingerprint: idempotency::fingerprint(request.method().as_str(), request.path(), body),
        success_status,
    }))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_JSON_BODY_BYTES {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit: MAX_JSON_BODY_BYTES,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    super::body::decode(&value)
}

fn check_booking_input(input: &BookingInput) -> Result<(), ApiError> {
    check_attendee(&input.attendee)?;
    check_local_attendee(&input.attendee)?;
    if !(1..=booking::MAX_SEATS_PER_REQUEST).contains(&input.seats) {
        return Err(ApiError::over_limit(
            "seats",
            input.seats,
            format!("must be 1 to {}", booking::MAX_SEATS_PER_REQUEST),
            booking::MAX_SEATS_PER_REQUEST,
        ));
    }
    if let Some(seconds) = input.hold_seconds
        && !(booking::MIN_HOLD_SECONDS..=booking::MAX_HOLD_SECONDS).contains(&seconds)
    {
        return Err(ApiError::over_limit(
            "hold_seconds",
            seconds,
            format!(
                "must be {} to {} seconds",
                booking::MIN_HOLD_SECONDS,
                booking::MAX_HOLD_SECONDS
            ),
            booking::MAX_HOLD_SECONDS,
        ));
    }
    Ok(())
}

/// Rejects a new booking or busy block for an attendee id of a remote person: those book
/// over ActivityPub only.
pub(super) fn check_local_attendee(attendee: &str) -> Result<(), ApiError> {
    if crate::federation::rsvp::is_remote_attendee(attendee) {
        return Err(ApiError::invalid(
            "attendee",
            attendee,
            format!(
                "starts with {:?}, which is kept for people of other servers who RSVP over \
                 ActivityPub",
                crate::federation::rsvp::REMOTE_ATTENDEE_PREFIX
            ),
        ));
    }
    Ok(())
}

/// Rejects an attendee id that is empty, too long or uses other characters than
/// `A-Z a-z 0-9 . _ @ : + -`.
pub(super) fn check_attendee(attendee: &str) -> Result<(), ApiError> {
    booking::check_attendee(attendee).map_err(|problem| {
        ApiError::over_limit(
            "attendee",
            attendee,
            problem,
            format!("{} characters", booking::MAX_ATTENDEE_CHARS),
        )
    })
}

fn settings_from_input(input: &SettingsInput) -> Result<EventSettings, ApiError> {
    use crate::availability::facts::MAX_BUFFER_SECONDS;
    const YEAR_SECONDS: i64 = 366 * 86_400;
    let checks = [
        (
            "buffer_before_seconds",
            input.buffer_before_seconds,
            0,
            MAX_BUFFER_SECONDS,
        ),
        (
            "buffer_after_seconds",
            input.buffer_after_seconds,
            0,
            MAX_BUFFER_SECONDS,
        ),
        (
            "opens_before_seconds",
            input.opens_before_seconds.unwrap_or(0),
            0,
            YEAR_SECONDS,
        ),
        (
            "closes_before_seconds",
            input.closes_before_seconds,
            -YEAR_SECONDS,
            YEAR_SECONDS,
        ),
    ];
    for (field, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            return Err(ApiError::over_limit(
                field,
                value,
                format!("must be {min} to {max}"),
                max,
            ));
        }
    }
    Ok(EventSettings {
        buffer_before_seconds: input.buffer_before_seconds,
        buffer_after_seconds: input.buffer_after_seconds,
        opens_before_seconds: input.opens_before_seconds,
        closes_before_seconds: input.closes_before_seconds,
        waitlist: input.waitlist,
    })
}

/// Parses the `{id}/occurrences/{recurrence_id}` part of a path.
pub(super) fn occurrence_key(
    event_id: i64,
    recurrence_id: &str,
) -> Result<OccurrenceKey, ApiError> {
    let instant = NaiveDateTime::parse_from_str(recurrence_id, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            ApiError::invalid(
                "recurrence_id",
                recurrence_id,
                "must be a UTC time like 20260505T170000Z",
            )
        })?
        .and_utc();
    Ok(OccurrenceKey {
        event_id,
        recurrence_id: instant,
    })
}

fn recurrence_text(instant: DateTime<Utc>) -> String {
    instant.format("%Y%m%dT%H%M%SZ").to_string()
}
