//! RSVPs across servers: our people's RSVPs to remote events, and remote people's RSVPs to
//! our events.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::people::person_id;
use super::{ApiError, AppState, require_token};
use crate::db::schema::incoming_rsvps;
use crate::federation::fetch::{FetchBudget, fetch_json};
use crate::federation::rsvp::outgoing;
use crate::federation::{discovery, remote_actors};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/people/{id}/rsvps", web::get().to(list))
        .route("/api/v1/people/{id}/rsvps", web::post().to(join))
        .route("/api/v1/people/{id}/rsvps/{rsvp}", web::delete().to(leave))
        .route("/api/v1/events/{id}/rsvps", web::get().to(of_event));
}

async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let person = person_id(&path.into_inner())?;
    let rsvps = state
        .with_conn(move |conn| Ok(outgoing::list(conn, &person)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "rsvps": rsvps })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinInput {
    /// The remote event, as the agenda lists it (`remote_event_id`).
    remote_event_id: i64,
    /// The occurrence's start, RFC 3339; required for a recurring event.
    #[serde(default)]
    occurrence: Option<String>,
}

/// Sends a `Join` for one of our people to a remote event's organizer: 202, as the organizer
/// answers later.
async fn join(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<JoinInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let person = person_id(&path.into_inner())?;
    let input = body.into_inner();
    let occurrence = input
        .occurrence
        .as_deref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.to_utc())
                .map_err(|_| {
                    ApiError::invalid(
                        "occurrence",
                        text,
                        "must be an RFC 3339 time like 2026-12-14T18:00:00Z",
                    )
                })
        })
        .transpose()?;
    let settings = state.federation.clone();
    let event_id = input.remote_event_id;
    let (organizer, cached, signer) = {
        let settings = settings.clone();
        state
            .with_conn(move |conn| {
                let event = outgoing::find_joinable_event(conn, event_id, settings.policy)?;
                let cached = remote_actors::cached(conn, &event.actor_id)?;
                let signer = discovery::instance_signer(conn, &settings)?;
                Ok((event.actor_id, cached, signer))
            })
            .await?
    };
    let inbox = if let Some(actor) = cached {
        actor.inbox
    } else {
        {
            let mut budget = FetchBudget::default();
            let document = fetch_json(&settings, Some(&signer), &mut budget, &organizer)
                .await
                .map_err(|e| {
                    tracing::warn!(organizer = %organizer, remote_event = event_id, error = %e, "cannot fetch the organizer of a remote event");
                    ApiError::invalid(
                        "remote_event_id",
                        event_id,
                        format!("its organizer {organizer} cannot be reached: {e}"),
                    )
                })?;
            let actor = remote_actors::from_document(&document, &organizer).map_err(|e| {
                tracing::warn!(organizer = %organizer, remote_event = event_id, error = %e, "organizer's actor document is not usable");
                ApiError::invalid(
                    "remote_event_id",
                    event_id,
                    format!("its organizer {organizer} has no usable actor document: {e}"),
                )
            })?;
            let inbox = actor.inbox.clone();
            state
                .with_conn(move |conn| Ok(remote_actors::store(conn, &actor)?))
                .await?;
            inbox
        }
    };
    let public_url = settings.public_url.clone();
    let rsvp = state
        .with_conn(move |conn| {
            Ok(outgoing::join(
                conn,
                &public_url,
                &person,
                event_id,
                occurrence,
                &inbox,
                Utc::now(),
            )?)
        })
        .await?;
    Ok(HttpResponse::Accepted().json(rsvp))
}

/// Withdraws an RSVP: sends a `Leave` and removes the reminders.
async fn leave(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let (person, id) = path.into_inner();
    let person = person_id(&person)?;
    let public_url = state.federation.public_url.clone();
    let left = state
        .with_conn(move |conn| Ok(outgoing::leave(conn, &public_url, &person, id, Utc::now())?))
        .await?;
    match left {
        Some(rsvp) => Ok(HttpResponse::Ok().json(rsvp)),
        None => Err(ApiError::NotFound(format!("RSVP {id} not found"))),
    }
}

/// An RSVP row as the organizer's listing reads it.
type Listed = (
    i64,
    NaiveDateTime,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    NaiveDateTime,
);

/// Lists remote people's RSVPs to one of our events, for its organizer.
async fn of_event(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let event_id = path.into_inner();
    let rows: Vec<Listed> = state
        .with_conn(move |conn| {
            if crate::calendar::store::find_event(conn, event_id)?.is_none() {
                return Err(ApiError::NotFound(format!("event {event_id} not found")));
            }
            Ok(incoming_rsvps::table
                .filter(incoming_rsvps::event_id.eq(event_id))
                .order((
                    incoming_rsvps::recurrence_id.asc(),
                    incoming_rsvps::id.asc(),
                ))
                .select((
                    incoming_rsvps::id,
                    incoming_rsvps::recurrence_id,
                    incoming_rsvps::actor_id,
                    incoming_rsvps::attendee,
                    incoming_rsvps::state,
                    incoming_rsvps::booking_id,
                    incoming_rsvps::reason,
                    incoming_rsvps::updated_at,
                ))
                .load(conn)?)
        })
        .await?;
    let rsvps: Vec<_> = rows
        .into_iter()
        .map(
            |(id, rid, actor, attendee, state, booking_id, reason, updated)| {
                json!({
                    "id": id,
                    "recurrence_id": rid.and_utc().format("%Y%m%dT%H%M%SZ").to_string(),
                    "actor": actor,
                    "attendee": attendee,
                    "state": state,
                    "booking_id": booking_id,
                    "reason": reason,
                    "updated_at": updated.and_utc(),
                })
            },
        )
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "rsvps": rsvps })))
}
