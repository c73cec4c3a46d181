//! `GET /api/v1/agenda`: the occurrences of one or all public calendars in a window, with
//! floating and all-day occurrences placed on the viewer's clock (`zone`, UTC by default).

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::event_json::{format_wall, parse_zone};
use super::{ApiError, AppState};
use crate::calendar;
use crate::calendar::agenda::AgendaItem;
use crate::calendar::event::EventStatus;
use crate::calendar::store;
use crate::calendar::time::{TimeBasis, Window, resolve_local};
use crate::federation::remote::{RemoteEvent, RemoteOccurrence};

/// The `origin` of our own events.
pub const LOCAL_ORIGIN: &str = "local";

/// Maximum agenda window, in days.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// Maximum occurrences in one response; more set `truncated`.
pub const MAX_AGENDA_OCCURRENCES: usize = 5_000;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/agenda", web::get().to(agenda));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgendaQuery {
    from: String,
    to: String,
    calendar: Option<String>,
    zone: Option<String>,
    #[serde(default)]
    include_cancelled: bool,
}

/// The agenda response.
#[derive(Debug, Serialize)]
pub struct Agenda {
    from: String,
    to: String,
    zone: String,
    occurrences: Vec<AgendaEntry>,
    truncated: bool,
}

/// One occurrence in the agenda.
#[derive(Debug, Serialize)]
pub struct AgendaEntry {
    /// `local`, or the host of the peer a remote event came from.
    origin: String,
    /// Our event id; `null` for remote events.
    event_id: Option<i64>,
    /// A remote event's id here, which our people's RSVPs name; `null` for our events.
    remote_event_id: Option<i64>,
    calendar: String,
    uid: String,
    recurrence_id: Option<String>,
    title: String,
    status: EventStatus,
    start: String,
    end: String,
    start_utc: String,
    end_utc: String,
    zone: Option<String>,
    all_day: bool,
    floating: bool,
    location: Option<String>,
    overridden: bool,
    url: String,
}

async fn agenda(
    state: web::Data<AppState>,
    query: web::Query<AgendaQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let viewer = match query.zone.as_deref() {
        Some(name) => parse_zone("zone", name)?,
        None => chrono_tz::UTC,
    };
    let window = Window {
        from: parse_bound("from", &query.from, viewer)?,
        to: parse_bound("to", &query.to, viewer)?,
    };
    check_window(&query, window)?;
    let public_url = state.public_url.clone();
    let policy = state.federation.policy;
    let body = state
        .with_conn(move |conn| {
            let calendars =
                match query.calendar.as_deref() {
                    Some(slug) => vec![store::find_calendar(conn, slug)?.ok_or_else(|| {
                        ApiError::NotFound(format!("calendar {slug:?} not found"))
                    })?],
                    None => store::list_calendars(conn, false)?,
                };
            let slugs: HashMap<i64, String> =
                calendars.iter().map(|c| (c.id, c.slug.clone())).collect();
            let ids: Vec<i64> = calendars.iter().map(|c| c.id).collect();
            let found = calendar::agenda::agenda(
                conn,
                &calendar::agenda::AgendaQuery {
                    calendar_ids: &ids,
                    window,
                    viewer,
                    include_cancelled: query.include_cancelled,
                    max_occurrences: MAX_AGENDA_OCCURRENCES,
                },
            )?;
            let mut occurrences: Vec<AgendaEntry> = found
                .items
                .iter()
                .map(|item| entry(item, &slugs, &public_url))
                .collect();
            let mut truncated = found.truncated;
            // Events merged from trusted peers belong to no local calendar, so they are listed
            // only in the agenda of all calendars.
            if query.calendar.is_none() {
                let remote = crate::federation::remote::occurrences_between(
                    conn,
                    window.from,
                    window.to,
                    MAX_AGENDA_OCCURRENCES + 1,
                    policy,
                )?;
                occurrences.extend(
                    remote
                        .iter()
                        .filter(|(event, occurrence)| {
                            query.include_cancelled
                                || remote_status(event, occurrence) != "cancelled"
                        })
                        .map(|(event, occurrence)| remote_entry(event, occurrence)),
                );
                occurrences.sort_by(|a, b| a.start_utc.cmp(&b.start_utc));
                if occurrences.len() > MAX_AGENDA_OCCURRENCES {
                    occurrences.truncate(MAX_AGENDA_OCCURRENCES);
                    truncated = true;
                }
            }
            Ok(Agenda {
                from: format_utc(window.from),
                to: format_utc(window.to),
                zone: viewer.name().to_owned(),
                occurrences,
                truncated,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn entry(item: &AgendaItem, slugs: &HashMap<i64, String>, public_url: &str) -> AgendaEntry {
    let occurrence = &item.occurrence;
    let basis = occurrence.basis;
    AgendaEntry {
        origin: LOCAL_ORIGIN.to_owned(),
        event_id: Some(item.event_id),
        remote_event_id: None,
        calendar: slugs.get(&item.calendar_id).cloned().unwrap_or_default(),
        uid: occurrence.uid.clone(),
        recurrence_id: occurrence.recurrence_id.map(format_utc),
        title: occurrence.details.title.clone(),
        status: occurrence.details.status,
        start: format_in_basis(occurrence.start, basis),
        end: format_in_basis(occurrence.end, basis),
        start_utc: format_utc(item.start),
        end_utc: format_utc(item.end),
        zone: basis.zone().map(|tz| tz.name().to_owned()),
        all_day: basis == TimeBasis::AllDay,
        floating: basis == TimeBasis::Floating,
        location: occurrence.details.location.clone(),
        overridden: occurrence.overridden,
        url: format!("{public_url}/events/{}", item.event_id),
    }
}

/// Returns the status of a remote occurrence: its own object's, else its event's.
fn remote_status<'a>(event: &'a RemoteEvent, occurrence: &'a RemoteOccurrence) -> &'a str {
    occurrence.status.as_deref().unwrap_or(&event.status)
}

fn remote_entry(event: &RemoteEvent, occurrence: &RemoteOccurrence) -> AgendaEntry {
    let (start, end) = occurrence.span();
    let basis = match event
        .zone
        .as_deref()
        .and_then(|name| name.parse::<Tz>().ok())
    {
        Some(tz) => TimeBasis::Zoned(tz),
        None => TimeBasis::Utc,
    };
    AgendaEntry {
        origin: event.origin.clone(),
        event_id: None,
        remote_event_id: Some(event.id),
        calendar: event.actor_id.clone(),
        uid: event.object_id.clone(),
        recurrence_id: occurrence
            .recurrence_id
            .filter(|_| event.rrule.is_some() || occurrence.object_id.is_some())
            .map(format_utc),
        title: event.title.clone(),
        status: EventStatus::parse(remote_status(event, occurrence)).unwrap_or_default(),
        start: format_in_basis(start, basis),
        end: format_in_basis(end, basis),
        start_utc: format_utc(start),
        end_utc: format_utc(end),
        zone: basis.zone().map(|tz| tz.name().to_owned()),
        all_day: false,
        floating: false,
        location: event.location.clone(),
        overridden: occurrence.object_id.is_some(),
        url: event.url.clone().unwrap_or_else(|| event.object_id.clone()),
    }
}

/// An occurrence time as the event's own clock shows it: with the zone's offset, `Z`, a
/// zone-less wall time, or a date.
pub(super) fn format_in_basis(instant: DateTime<Utc>, basis: TimeBasis) -> String {
    match basis {
        TimeBasis::Zoned(tz) => instant
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        TimeBasis::Utc => format_utc(instant),
        TimeBasis::Floating | TimeBasis::AllDay => format_wall(instant.naive_utc(), basis),
    }
}

fn format_utc(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reads a window bound: an RFC 3339 instant, or a date meaning midnight on the viewer's clock.
fn parse_bound(field: &str, text: &str, viewer: Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.to_utc());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(resolve_local(viewer, date.and_time(NaiveTime::MIN)));
    }
    Err(ApiError::invalid(
        field,
        text,
        "must be an RFC 3339 instant like 2026-05-01T00:00:00Z or a date like 2026-05-01",
    ))
}

fn check_window(query: &AgendaQuery, window: Window) -> Result<(), ApiError> {
    if window.to <= window.from {
        return Err(ApiError::invalid("to", &query.to, "must be after from"));
    }
    if window.to - window.from > Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::invalid(
            "to",
            &query.to,
            format!("the window is longer than the limit of {MAX_WINDOW_DAYS} days"),
        ));
    }
    Ok(())
}
