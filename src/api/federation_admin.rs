//! Token-protected federation administration: peers and their trust, the delivery health of
//! remote domains, and the followers of calendars that approve them by hand.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::{ApiError, AppState, require_token};
use crate::calendar::store;
use crate::federation::follows::{self, FollowTarget};
use crate::federation::peers::{self, PeerState};
use crate::federation::{actors, discovery};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/peers", web::get().to(list_peers))
        .route("/api/v1/peers", web::post().to(add_peer))
        .route("/api/v1/peers/{domain}", web::put().to(set_peer))
        .route(
            "/api/v1/delivery-domains",
            web::get().to(list_delivery_domains),
        )
        .route(
            "/api/v1/calendars/{slug}/federation",
            web::put().to(set_calendar_federation),
        )
        .route(
            "/api/v1/calendars/{slug}/followers",
            web::get().to(list_followers),
        )
        .route(
            "/api/v1/calendars/{slug}/followers/decision",
            web::post().to(decide_follower),
        );
}

async fn list_peers(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let list = state.with_conn(|conn| Ok(peers::list(conn)?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "peers": list })))
}

/// Lists the delivery health of every domain that ever failed, failing ones first.
async fn list_delivery_domains(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let list = state
        .with_conn(|conn| {
            crate::delivery::domains::list(conn)
                .map_err(|e| ApiError::from(crate::federation::Error::from(e)))
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "domains": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPeer {
    domain: String,
    #[serde(default)]
    trust: bool,
}

/// Records a peer, resolves its application actor and follows it.
async fn add_peer(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: Json<AddPeer>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let body = body.into_inner();
    let domain = peers::normalise_domain(&body.domain).map_err(ApiError::Invalid)?;
    let peer_state = if body.trust {
        PeerState::Trusted
    } else {
        PeerState::Pending
    };
    let settings = state.federation.clone();
    let (stored_domain, signer_settings) = (domain.clone(), settings.clone());
    let signer = state
        .with_conn(move |conn| {
            peers::set_state(conn, &stored_domain, peer_state, None)?;
            discovery::instance_signer(conn, &signer_settings).map_err(ApiError::from)
        })
        .await?;
    let actor = discovery::resolve_application_actor(&settings, &signer, &domain)
        .await
        .map_err(|e| ApiError::invalid("domain", &domain, e.to_string()))?;
    let peer = state
        .with_conn(move |conn| {
            discovery::record_and_follow(conn, &settings, &domain, &actor)?;
            peers::find(conn, &domain)?
                .ok_or_else(|| ApiError::NotFound(format!("peer {domain} not found")))
        })
        .await?;
    Ok(HttpResponse::Created().json(peer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPeer {
    state: String,
    reason: Option<String>,
}

async fn set_peer(
    request: HttpRequest,
    state: web::Data<AppState>,
    domain: web::Path<String>,
    body: Json<SetPeer>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let domain = peers::normalise_domain(&domain.into_inner()).map_err(ApiError::Invalid)?;
    let body = body.into_inner();
    let peer_state = match body.state.as_str() {
        "trusted" => PeerState::Trusted,
        "pending" => PeerState::Pending,
        "blocked" => PeerState::Blocked,
        other => {
            return Err(ApiError::invalid(
                "state",
                other,
                "must be trusted, pending or blocked",
            ));
        }
    };
    if let Some(reason) = &body.reason
        && reason.chars().count() > 500
    {
        return Err(ApiError::invalid(
            "reason",
            reason.chars().count(),
            "is longer than the limit of 500 characters",
        ));
    }
    let peer = state
        .with_conn(move |conn| {
            Ok(peers::set_state(
                conn,
                &domain,
                peer_state,
                body.reason.as_deref(),
            )?)
        })
        .await?;
    tracing::info!(peer = %peer.domain, state = peer.state.as_str(), "peer state changed");
    Ok(HttpResponse::Ok().json(peer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFederation {
    manually_approves_followers: bool,
}

async fn set_calendar_federation(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: Json<CalendarFederation>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let manual = body.manually_approves_followers;
    state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            follows::set_manual_approval(conn, calendar.id, manual).map_err(ApiError::from)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "manually_approves_followers": manual })))
}

async fn list_followers(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let list = state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            follows::list(conn, Some(calendar.id)).map_err(ApiError::from)
        })
        .await?;
    let followers: Vec<_> = list
        .into_iter()
        .map(|f| json!({"actor": f.actor_id, "inbox": f.inbox, "accepted": f.accepted}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "followers": followers })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    actor: String,
    accept: bool,
}

async fn decide_follower(
    request: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: Json<Decision>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let slug = slug.into_inner();
    let body = body.into_inner();
    let public_url = state.federation.public_url.clone();
    state
        .with_conn(move |conn| {
            let calendar = store::find_calendar(conn, &slug)?
                .ok_or_else(|| ApiError::NotFound(format!("calendar {slug:?} not found")))?;
            let calendar_actor = actors::calendar_id(&public_url, &calendar.slug);
            let target = FollowTarget {
                calendar_id: Some(calendar.id),
                calendar_actor: &calendar_actor,
            };
            let decided = follows::decide(conn, &target, &body.actor, body.accept)?;
            if decided {
                Ok(())
            } else {
                Err(ApiError::NotFound(format!(
                    "{} has no pending follow of {slug}",
                    body.actor
                )))
            }
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
