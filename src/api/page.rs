//! The calendar page: upcoming occurrences with a "Remind me" button, its script and the
//! service worker that shows Web Push reminders.

use std::fmt::Write;

use actix_web::{HttpResponse, web};
use chrono::{Duration, SecondsFormat, Utc};

use super::{ApiError, AppState};
use crate::calendar::agenda::{self, AgendaQuery};
use crate::calendar::store;
use crate::calendar::time::Window;
use crate::notify::messages::{anchor, escape_html, local_time};

/// How far ahead the page lists occurrences.
const HORIZON_DAYS: i64 = 60;
/// Most occurrences on the page.
const MAX_ITEMS: usize = 100;

const SERVICE_WORKER: &str = include_str!("../../static/sw.js");
const PAGE_SCRIPT: &str = include_str!("../../static/calendar.js");

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // `GET /calendars/{slug}` is shared with the calendar's ActivityPub actor, which hands
    // requests that do not ask for ActivityPub JSON to `page`.
    cfg.route("/sw.js", web::get().to(service_worker))
        .route("/assets/calendar.js", web::get().to(script));
}

async fn service_worker() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Service-Worker-Allowed", "/"))
        .body(SERVICE_WORKER)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(PAGE_SCRIPT)
}

pub(super) async fn page(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    let html = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            let now = Utc::now();
            let listed = agenda::agenda(
                conn,
                &AgendaQuery {
                    calendar_ids: &[calendar.id],
                    window: Window {
                        from: now,
                        to: now + Duration::days(HORIZON_DAYS),
                    },
                    viewer: calendar.default_zone,
                    include_cancelled: false,
                    max_occurrences: MAX_ITEMS,
                },
            )?;
            Ok(render(&calendar, &listed))
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

fn render(calendar: &crate::calendar::Calendar, listed: &agenda::Agenda) -> String {
    let name = escape_html(&calendar.name);
    let mut items = String::new();
    for item in &listed.items {
        let occurrence = &item.occurrence;
        let recurrence = occurrence
            .recurrence_id
            .map(|r| r.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        let anchor = anchor(item.event_id, occurrence.recurrence_id);
        let _ = writeln!(
            items,
            "<li class=\"occurrence\" id=\"{anchor}\" data-event-id=\"{id}\" \
             data-recurrence-id=\"{recurrence}\"><time datetime=\"{start}\">{local}</time> \
             <span class=\"title\">{title}</span> <button class=\"remind\" type=\"button\">Remind me</button></li>",
            id = item.event_id,
            start = item.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            local = escape_html(&local_time(item.start, calendar.default_zone)),
            title = escape_html(&occurrence.details.title),
        );
    }
    if listed.items.is_empty() {
        items.push_str("<li class=\"empty\">Nothing in the next 60 days.</li>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name}</title>\n<script src=\"/assets/calendar.js\" defer></script>\n</head>\n\
         <body data-calendar=\"{slug}\" data-sw=\"pending\">\n<h1>{name}</h1>\n\
         <form id=\"who\"><label>Your id <input name=\"person\" autocomplete=\"username\"></label>\n\
         <label>Token <input name=\"token\" type=\"password\"></label></form>\n\
         <p id=\"push-status\" role=\"status\"></p>\n<ol id=\"agenda\">\n{items}</ol>\n</body>\n</html>\n",
        slug = escape_html(&calendar.slug),
    )
}
