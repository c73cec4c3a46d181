//! iCalendar routes: the calendar feed and file upload.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, AppState, MAX_ICS_BODY_BYTES, require_token};
use crate::calendar::import::{export_ics, import_ics};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/calendars/{slug}.ics", web::get().to(feed))
        .route("/calendars/{slug}.ics", web::head().to(feed))
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
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let body = read_limited(&request, payload, MAX_ICS_BODY_BYTES).await?;
    let slug = slug.into_inner();
    let report = state
        .with_conn(move |conn| Ok(import_ics(conn, &slug, &body)?))
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Reads the request body, stopping with a 413 as soon as it passes `limit` bytes (or declares
/// more in Content-Length) so an oversized upload is never held in memory.
async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt as _;

    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(ApiError::TooLarge { size, limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::BadRequest(format!("the request body could not be read: {error}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge {
                size: body.len() + chunk.len(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
