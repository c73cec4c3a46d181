//! Federation routes: WebFinger, NodeInfo, actor documents, collections and the inbox.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::{Value, json};

use activitypub_federation::fetch::webfinger::build_webfinger_response_with_type;

use super::{ApiError, AppState};
use crate::calendar::store;
use crate::federation::inbox::{self, InboxContext, InboxRequest, MAX_INBOX_BODY_BYTES, Rejection};
use crate::federation::{ACTIVITY_JSON, actors, discovery, follows, outbox};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/webfinger", web::get().to(webfinger))
        .route("/.well-known/nodeinfo", web::get().to(nodeinfo_index))
        .route("/nodeinfo/2.1", web::get().to(nodeinfo))
        .route("/inbox", web::post().to(post_inbox))
        .route("/actor", web::get().to(instance_actor))
        .route("/actor/inbox", web::post().to(post_inbox))
        .route("/actor/outbox", web::get().to(instance_outbox))
        .route("/calendars/{slug}", web::get().to(calendar_actor))
        .route("/calendars/{slug}/inbox", web::post().to(post_inbox))
        .route("/calendars/{slug}/outbox", web::get().to(calendar_outbox))
        .route(
            "/calendars/{slug}/followers",
            web::get().to(calendar_followers),
        )
        .route("/people/{person}", web::get().to(person_actor))
        .route("/people/{person}/inbox", web::post().to(post_inbox))
        .route("/people/{person}/outbox", web::get().to(person_outbox));
}

fn activity_json(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ACTIVITY_JSON)
        .insert_header((header::VARY, "Accept"))
        .json(body)
}

#[derive(Debug, Deserialize)]
struct WebfingerQuery {
    resource: String,
}

/// `acct:<calendar slug>@<host>` names a calendar, `acct:events@<host>` the instance actor.
async fn webfinger(
    state: web::Data<AppState>,
    query: web::Query<WebfingerQuery>,
) -> Result<HttpResponse, ApiError> {
    let resource = query.into_inner().resource;
    let settings = state.federation.clone();
    let local = settings.local_domain();
    let name = resource
        .strip_prefix("acct:")
        .and_then(|rest| rest.rsplit_once('@'))
        .filter(|(_, host)| host.eq_ignore_ascii_case(&local))
        .map(|(name, _)| name.to_owned())
        .ok_or_else(|| {
            ApiError::NotFound(format!("{resource:?} is not an acct: address on {local}"))
        })?;
    let public_url = settings.public_url.clone();
    let (href, kind) = if name == actors::INSTANCE_USERNAME || name == local {
        (actors::instance_id(&public_url), "Application")
    } else {
        let slug = name.clone();
        let found = state
            .with_conn(move |conn| Ok(store::find_calendar(conn, &slug)?))
            .await?;
        let calendar = found.ok_or_else(|| ApiError::NotFound(format!("no calendar {name:?}")))?;
        (actors::calendar_id(&public_url, &calendar.slug), "Group")
    };
    let url =
        url::Url::parse(&href).map_err(|e| ApiError::Internal(format!("actor id {href}: {e}")))?;
    let mut body = build_webfinger_response_with_type(resource, vec![(url.clone(), Some(kind))]);
    body.aliases.push(url);
    Ok(HttpResponse::Ok()
        .content_type("application/jrd+json")
        .json(body))
}

/// Serves the NodeInfo index. The 2.1 link comes first because Gancio reads only the first link.
async fn nodeinfo_index(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.federation.public_url;
    HttpResponse::Ok().json(json!({
        "links": [
            {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": format!("{base}/nodeinfo/2.1")},
            {"rel": discovery::APPLICATION_REL, "href": actors::instance_id(base)},
        ]
    }))
}

async fn nodeinfo(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let base = state.federation.public_url.clone();
    let calendars = state
        .with_conn(|conn| Ok(store::list_calendars(conn, false)?.len()))
        .await?;
    let body = json!({
        "version": "2.1",
        "software": {
            "name": "rose-events",
            "version": env!("CARGO_PKG_VERSION"),
            "repository": "https://rose-ash.org/rose-events",
        },
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": false,
        "usage": {"users": {"total": calendars}},
        "metadata": {"nodeActor": actors::instance_id(&base)},
    });
    Ok(HttpResponse::Ok()
        .content_type(
            "application/json; profile=\"http://nodeinfo.diaspora.software/ns/schema/2.1#\"",
        )
        .json(body))
}

async fn instance_actor(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = state.federation.clone();
    let document = state
        .with_conn(move |conn| Ok(actors::instance_document(conn, &settings)?))
        .await?;
    Ok(activity_json(&document))
}

async fn calendar_actor(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !super::activitypub::asks_for_activity_json(&request) {
        // People following the calendar's link from their Fediverse client get the page.
        let mut response = super::page::page(state, slug).await?;
        response
            .headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Accept"));
        return Ok(response);
    }
    let slug = slug.into_inner();
    let settings = state.federation.clone();
    let document = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            actors::calendar_document(conn, &settings, &calendar).map_err(ApiError::from)
        })
        .await?;
    Ok(activity_json(&document))
}

async fn person_actor(
    state: web::Data<AppState>,
    person: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let person = person.into_inner();
    let settings = state.federation.clone();
    let document = state
        .with_conn(move |conn| {
            actors::person_document(conn, &settings, &person)?
                .ok_or_else(|| ApiError::NotFound(format!("person {person:?} has no actor")))
        })
        .await?;
    Ok(activity_json(&document))
}

async fn outbox_of(state: &AppState, actor_id: String) -> Result<HttpResponse, ApiError> {
    let id = format!("{actor_id}/outbox");
    let (total, page) = state
        .with_conn(move |conn| Ok(outbox::public_page(conn, &actor_id)?))
        .await?;
    Ok(activity_json(
        &crate::federation::protocol::OrderedCollection {
            context: "https://www.w3.org/ns/activitystreams",
            id,
            kind: "OrderedCollection",
            total_items: total,
            ordered_items: page.into_iter().map(|r| r.activity).collect(),
        },
    ))
}

async fn instance_outbox(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = actors::instance_id(&state.federation.public_url);
    outbox_of(&state, id).await
}

async fn calendar_outbox(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug.into_inner();
    let check = slug.clone();
    state
        .with_conn(move |conn| {
            store::find_calendar(conn, &check)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {check:?} not found")))
        })
        .await?;
    let id = actors::calendar_id(&state.federation.public_url, &slug);
    outbox_of(&state, id).await
}

async fn person_outbox(
    state: web::Data<AppState>,
    person: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let person = person.into_inner();
    actors::check_person_id(&person).map_err(ApiError::Invalid)?;
    let id = actors::person_id(&state.federation.public_url, &person);
    outbox_of(&state, id).await
}

/// Serves the followers collection, which lists accepted followers only.
async fn calendar_followers(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug.into_inner();
    let id = format!(
        "{}/followers",
        actors::calendar_id(&state.federation.public_url, &slug)
    );
    let accepted = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            let list = follows::list(conn, Some(calendar.id))?;
            Ok(list
                .into_iter()
                .filter(|f| f.accepted)
                .map(|f| Value::String(f.actor_id))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(activity_json(
        &crate::federation::protocol::OrderedCollection {
            context: "https://www.w3.org/ns/activitystreams",
            id,
            kind: "OrderedCollection",
            total_items: accepted.len() as i64,
            ordered_items: accepted,
        },
    ))
}

/// Receives a delivery at any inbox path; the actor the path names does not change the processing.
async fn post_inbox(
    request: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    // The outer error is the size limit; the inner one a broken connection.
    let body = match payload.to_bytes_limited(MAX_INBOX_BODY_BYTES).await {
        Ok(Ok(bytes)) => bytes.to_vec(),
        Err(_) => {
            return ApiError::TooLarge {
                size: MAX_INBOX_BODY_BYTES + 1,
                limit: MAX_INBOX_BODY_BYTES,
            }
            .error_response();
        }
        Ok(Err(_)) => {
            return rejection_response(&Rejection {
                status: 400,
                field: Some("body".into()),
                value: None,
                detail: "the request body could not be read".into(),
                limit: None,
            });
        }
    };
    let inbox_request = InboxRequest {
        method: request.method().as_str().to_owned(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.path().to_owned(), |p| p.as_str().to_owned()),
        headers: request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().ok()?.to_owned(),
                ))
            })
            .collect(),
        body,
    };
    let context = InboxContext {
        pool: state.pool.clone(),
        settings: state.federation.clone(),
    };
    match inbox::receive(&context, &inbox_request).await {
        Ok(receipt) => HttpResponse::Accepted()
            .content_type("application/json")
            .json(json!({"status": 202, "detail": receipt.effect})),
        Err(rejection) => rejection_response(&rejection),
    }
}

fn rejection_response(rejection: &Rejection) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(rejection.status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": rejection.status,
        "detail": rejection.detail,
    });
    if let Some(field) = &rejection.field {
        body["field"] = json!(field);
    }
    if let Some(value) = &rejection.value {
        body["value"] = json!(value);
    }
    if let Some(limit) = rejection.limit {
        body["limit"] = json!(limit);
    }
    let mut response = HttpResponse::build(status);
    if rejection.status == 401 {
        response.insert_header(("WWW-Authenticate", "Signature"));
    }
    response
        .content_type("application/problem+json")
        .body(body.to_string())
}
