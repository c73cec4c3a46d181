//! iCalendar routes: the calendar feed and file upload.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, AppState, MAX_ICS_BODY_BYTES, require_token};
use crate::calendar::import::{export_ics, import_ics};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/calendars/{slug}.ics", web::get().to(feed))
        .route("/api/v1/calendars/{slug}/import", web::post().to(upload));
}

async fn feed(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug.into_inner();
    let public_url = state.public_url.clone();
    let text = state
        .with_conn(move |conn| Ok(export_ics(conn, &slug, &public_url)?))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .body(text))
}

/// Imports an uploaded `.ics` body (any content type) into the calendar, creating it when
/// missing. A bad file is rejected whole with its line number.
async fn upload(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    if body.len() > MAX_ICS_BODY_BYTES {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit: MAX_ICS_BODY_BYTES,
        });
    }
    let slug = slug.into_inner();
    let report = state
        .with_conn(move |conn| Ok(import_ics(conn, &slug, &body)?))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}
