//! Web Push routes: the VAPID public key and the browser's push subscriptions.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::Json;
use super::{ApiError, AppState, require_token};
use crate::notify::subscriptions::{self, BrowserSubscription};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/push/vapid-public-key", web::get().to(public_key))
        .route("/api/v1/push/subscriptions", web::post().to(subscribe))
        .route("/api/v1/push/subscriptions", web::delete().to(unsubscribe));
}

async fn public_key(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(key) = &state.vapid_public_key else {
        return Err(ApiError::NotFound(
            "Web Push is off on this server: the operator has to set a VAPID subject".to_owned(),
        ));
    };
    Ok(HttpResponse::Ok().json(json!({ "public_key": key })))
}

/// The browser's `PushSubscription.toJSON()` plus the person it belongs to.
#[derive(Debug, Deserialize)]
struct SubscribeInput {
    person: String,
    #[serde(flatten)]
    subscription: BrowserSubscription,
}

async fn subscribe(
    request: HttpRequest,
    state: web::Data<AppState>,
    input: Json<SubscribeInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let input = input.into_inner();
    let loopback = state.allow_loopback_push;
    let stored = state
        .with_conn(move |conn| {
            Ok(subscriptions::subscribe(
                conn,
                &input.person,
                &input.subscription,
                loopback,
                chrono::Utc::now(),
            )?)
        })
        .await?;
    Ok(HttpResponse::Created().json(stored))
}

#[derive(Debug, Deserialize)]
struct UnsubscribeInput {
    endpoint: String,
}

async fn unsubscribe(
    request: HttpRequest,
    state: web::Data<AppState>,
    input: Json<UnsubscribeInput>,
) -> Result<HttpResponse, ApiError> {
    require_token(&request, &state).await?;
    let endpoint = input.into_inner().endpoint;
    let shown = endpoint.clone();
    let removed = state
        .with_conn(move |conn| Ok(subscriptions::unsubscribe(conn, &endpoint)?))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "no push subscription has endpoint {shown:?}"
        )))
    }
}
