//! Calendar routes: list, create, read, update, delete.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::body::Json;
use super::event_json::parse_zone;
use super::{ApiError, AppState, require_token};
use crate::calendar::validate::check_calendar;
use crate::calendar::{Calendar, NewCalendar, Visibility, store};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/calendars", web::get().to(list))
        .route("/api/v1/calendars", web::post().to(create))
        .route("/api/v1/calendars/{slug}", web::get().to(show))
        .route("/api/v1/calendars/{slug}", web::put().to(update))
        .route("/api/v1/calendars/{slug}", web::delete().to(remove));
}

/// A calendar as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarInput {
    slug: Option<String>,
    name: String,
    default_zone: Option<String>,
    visibility: Option<Visibility>,
}

/// A calendar as the API returns it.
#[derive(Debug, Serialize)]
struct CalendarOutput {
    slug: String,
    name: String,
    default_zone: String,
    visibility: Visibility,
    ics_url: String,
    created_at: String,
    updated_at: String,
}

fn output(calendar: &Calendar, public_url: &str) -> CalendarOutput {
    CalendarOutput {
        slug: calendar.slug.clone(),
        name: calendar.name.clone(),
        default_zone: calendar.default_zone.name().to_owned(),
        visibility: calendar.visibility,
        ics_url: format!("{public_url}/calendars/{}.ics", calendar.slug),
        created_at: calendar.created_at.to_rfc3339(),
        updated_at: calendar.updated_at.to_rfc3339(),
    }
}

fn new_calendar(slug: String, input: CalendarInput) -> Result<NewCalendar, ApiError> {
    let default_zone = match input.default_zone.as_deref() {
        Some(name) => parse_zone("default_zone", name)?,
        None => chrono_tz::UTC,
    };
    let calendar = NewCalendar {
        slug,
        name: input.name,
        default_zone,
        visibility: input.visibility.unwrap_or(Visibility::Public),
    };
    check_calendar(&calendar).map_err(ApiError::Invalid)?;
    Ok(calendar)
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let public_url = state.public_url.clone();
    let calendars = state
        .with_conn(|conn| Ok(store::list_calendars(conn, false)?))
        .await?;
    let body: Vec<_> = calendars.iter().map(|c| output(c, &public_url)).collect();
    Ok(HttpResponse::Ok().json(body))
}

async fn create(
    request: HttpRequest,
    state: web::Data<AppState>,
    input: Json<CalendarInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let input = input.into_inner();
    let slug = input
        .slug
        .clone()
        .ok_or_else(|| ApiError::invalid("slug", "", "is required"))?;
    let calendar = new_calendar(slug, input)?;
    let stored = state
        .with_conn(move |conn| Ok(store::insert_calendar(conn, &calendar)?))
        .await?;
    let body = output(&stored, &state.public_url);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/calendars/{}", stored.slug)))
        .json(body))
}

async fn show(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug.into_inner();
    let calendar = state
        .with_conn(move |conn| {
            store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(output(&calendar, &state.public_url)))
}

async fn update(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    input: Json<CalendarInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let input = input.into_inner();
    if let Some(other) = input.slug.as_deref().filter(|s| *s != slug) {
        return Err(ApiError::invalid("slug", other, "cannot be changed"));
    }
    let calendar = new_calendar(slug.clone(), input)?;
    let stored = state
        .with_conn(move |conn| Ok(store::update_calendar(conn, &slug, &calendar)?))
        .await?;
    Ok(HttpResponse::Ok().json(output(&stored, &state.public_url)))
}

async fn remove(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let deleted = state
        .with_conn({
            let slug = slug.clone();
            move |conn| Ok(store::delete_calendar(conn, &slug)?)
        })
        .await?;
    if !deleted {
        return Err(ApiError::NotFound(format!("calendar {slug:?} not found")));
    }
    Ok(HttpResponse::NoContent().finish())
}
