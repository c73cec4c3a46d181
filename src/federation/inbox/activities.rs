//! Step 5 of the inbox: what each activity type does.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use super::{Checked, InboxContext, Receipt, Rejection, Trust};
use crate::db::schema::inbox_receipts;
use crate::db::{AnyConnection, write_transaction};
use crate::federation::fetch::{FetchBudget, fetch_json};
use crate::federation::follows::{self, FollowOutcome, FollowTarget};
use crate::federation::incoming::{self, id_of, type_of};
use crate::federation::peers::{self, PeerState};
use crate::federation::remote::{self, Outcome};
use crate::federation::remote_actors::RemoteActor;
use crate::federation::rsvp::{self, incoming::Intent, incoming::Sender};
use crate::federation::{Settings, domain_of};

/// Event-like object types: Hubzilla publishes events as `Invite`.
const EVENT_TYPES: [&str; 1] = ["Event"];

/// Runs the activity's effect.
pub(super) async fn dispatch(
    context: &InboxContext,
    checked: Checked,
    actor: &RemoteActor,
    trust: Trust,
    budget: &mut FetchBudget,
) -> Result<Receipt, Rejection> {
    let kind = checked.envelope.kind.clone();
    match kind.as_str() {
        "Follow" => follow(context, checked, actor).await,
        "Undo" => undo(context, checked).await,
        "Create" | "Update" | "Invite" => create_or_update(context, checked, trust, budget).await,
        "Delete" => delete(context, checked, trust).await,
        "Announce" => announce(context, checked, budget).await,
        "Join" => rsvp(context, checked, actor, Intent::Going).await,
        "Leave" => rsvp(context, checked, actor, Intent::NotGoing).await,
        "Accept" | "Reject" | "TentativeAccept" => answer(context, checked, actor).await,
        _ => {
            log_decision(&checked, "ignored", "activity type not handled");
            record_only(context, checked, &format!("ignored: {kind} is not handled")).await
        }
    }
}

/// Handles a remote person's `Join` or `Leave` of one of our occurrences. RSVPs are open to
/// every server that is not blocked, as follows are, because they merge no content and the
/// booking rules decide the seat.
async fn rsvp(
    context: &InboxContext,
    checked: Checked,
    actor: &RemoteActor,
    intent: Intent,
) -> Result<Receipt, Rejection> {
    let public_url = context.settings.public_url.clone();
    let activity = checked.activity.clone();
    let sender_id = checked.envelope.actor.clone();
    let inbox = actor.inbox.clone();
    let now = checked.now;
    let receipt = with_receipt(context, &checked, move |conn| {
        let target = rsvp::incoming::resolve(conn, &public_url, &activity, now)
            .map_err(|e| federation_rejection(&e))?;
        let sender = Sender {
            actor_id: &sender_id,
            inbox: &inbox,
        };
        rsvp::incoming::receive(conn, sender, &activity, intent, target, now)
            .map_err(|e| federation_rejection(&e))
    })
    .await?;
    log_decision(&checked, "processed", &receipt.effect);
    Ok(receipt)
}

/// Handles an `Accept`, `TentativeAccept` or `Reject`: a remote person's RSVP to one of our
/// events, an organizer's response to one of our people's `Join`s, or a peer's response to
/// our `Follow`, distinguished by the object.
async fn answer(
    context: &InboxContext,
    checked: Checked,
    actor: &RemoteActor,
) -> Result<Receipt, Rejection> {
    let public_url = context.settings.public_url.clone();
    let activity = checked.activity.clone();
    let sender_id = checked.envelope.actor.clone();
    let inbox = actor.inbox.clone();
    let kind = checked.envelope.kind.clone();
    let now = checked.now;
    let receipt = with_receipt(context, &checked, move |conn| {
        let fail = |e: crate::federation::Error| federation_rejection(&e);
        let target = rsvp::incoming::resolve(conn, &public_url, &activity, now).map_err(fail)?;
        if !matches!(target, rsvp::incoming::Target::NotOurs) {
            let intent = match kind.as_str() {
                "Accept" => Intent::Going,
                "TentativeAccept" => Intent::Maybe,
                _ => Intent::NotGoing,
            };
            let sender = Sender {
                actor_id: &sender_id,
                inbox: &inbox,
            };
            return rsvp::incoming::receive(conn, sender, &activity, intent, target, now)
                .map_err(fail);
        }
        if rsvp::outgoing::answers_our_join(conn, &activity).map_err(fail)? {
            return rsvp::outgoing::receive_answer(conn, &sender_id, &activity, now).map_err(fail);
        }
        if kind == "TentativeAccept" {
            return Ok("ignored: not an answer about an RSVP".to_owned());
        }
        let follow_id = activity.get("object").and_then(id_of).unwrap_or_default();
        let accepted = kind == "Accept";
        let ours = peers::record_follow_answer(conn, &sender_id, follow_id, accepted)
            .map_err(|e| Rejection::internal(&e))?;
        Ok(match (ours, accepted) {
            (true, true) => "our follow was accepted".to_owned(),
            (true, false) => "our follow was rejected".to_owned(),
            (false, _) => "ignored: not an answer to a follow or an RSVP of ours".to_owned(),
        })
    })
    .await?;
    log_decision(&checked, "processed", &receipt.effect);
    Ok(receipt)
}

/// Maps a federation error to a rejection: a peer's mistake is a 422 naming the field, and
/// anything else is a 500.
fn federation_rejection(error: &crate::federation::Error) -> Rejection {
    match error {
        crate::federation::Error::Invalid(field) => Rejection::invalid(field),
        other => Rejection::internal(other),
    }
}

fn log_decision(checked: &Checked, decision: &str, reason: &str) {
    tracing::info!(
        peer = %domain_of(&checked.envelope.actor).unwrap_or_default(),
        activity = %checked.envelope.id,
        kind = %checked.envelope.kind,
        decision,
        reason,
        "inbox decision"
    );
}

/// Runs `effect` and stores the replay receipt in one transaction.
///
/// NOTE: receipts are kept for good. Only those younger than the signature window (one hour)
/// can stop a replay, so older rows could be deleted by a scheduled job, which does not exist
/// yet.
async fn with_receipt<F>(
    context: &InboxContext,
    checked: &Checked,
    effect: F,
) -> Result<Receipt, Rejection>
where
    F: FnOnce(&mut AnyConnection) -> Result<String, Rejection> + Send + 'static,
{
    let sha = checked.body_sha256.clone();
    let activity_id = checked.envelope.id.clone();
    let actor_id = checked.envelope.actor.clone();
    let now = checked.now.naive_utc();
    context
        .db(move |conn| {
            write_transaction(conn, |conn| {
                let inserted = diesel::insert_into(inbox_receipts::table)
                    .values((
                        inbox_receipts::body_sha256.eq(&sha),
                        inbox_receipts::activity_id.eq(&activity_id),
                        inbox_receipts::actor_id.eq(&actor_id),
                        inbox_receipts::received_at.eq(now),
                    ))
                    .execute(conn);
                match inserted {
                    Ok(_) => {}
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => return Ok("duplicate delivery, already processed".to_owned()),
                    Err(e) => return Err(Rejection::internal(&e)),
                }
                effect(conn)
            })
        })
        .await
        .map(|effect| Receipt { effect })
}

impl From<diesel::result::Error> for Rejection {
    fn from(error: diesel::result::Error) -> Self {
        Rejection::internal(&error)
    }
}

async fn record_only(
    context: &InboxContext,
    checked: Checked,
    effect: &str,
) -> Result<Receipt, Rejection> {
    let effect = effect.to_owned();
    with_receipt(context, &checked, move |_| Ok(effect)).await
}

/// Finds the calendar a local actor id names, if it is one of ours.
fn local_calendar(
    conn: &mut AnyConnection,
    settings: &Settings,
    id: &str,
) -> Result<Option<crate::calendar::Calendar>, Rejection> {
    let prefix = format!("{}/calendars/", settings.public_url);
    let Some(slug) = id.strip_prefix(&prefix) else {
        return Ok(None);
    };
    crate::calendar::store::find_calendar(conn, slug).map_err(|e| Rejection::internal(&e))
}

/// Finds the followed actor a local id names: one of our calendars, or the instance actor (`None`
/// calendar id).
fn local_followable(
    conn: &mut AnyConnection,
    settings: &Settings,
    id: &str,
) -> Result<(Option<i64>, String), Rejection> {
    if id == crate::federation::actors::instance_id(&settings.public_url) {
        return Ok((None, id.to_owned()));
    }
    match local_calendar(conn, settings, id)? {
        Some(calendar) => Ok((
            Some(calendar.id),
            crate::federation::actors::calendar_id(&settings.public_url, &calendar.slug),
        )),
        None => Err(Rejection {
            status: 422,
            field: Some("object".into()),
            value: Some(id.to_owned()),
            detail: format!("{id} is not a calendar or the instance actor of this server"),
            limit: None,
        }),
    }
}

async fn follow(
    context: &InboxContext,
    checked: Checked,
    actor: &RemoteActor,
) -> Result<Receipt, Rejection> {
    let target = checked
        .activity
        .get("object")
        .and_then(id_of)
        .unwrap_or_default()
        .to_owned();
    let settings = context.settings.clone();
    let follower = checked.envelope.actor.clone();
    let inbox = actor.inbox.clone();
    let follow = checked.activity.clone();
    log_decision(
        &checked,
        "accepted",
        "follows are open to every server that is not blocked",
    );
    with_receipt(context, &checked, move |conn| {
        let (calendar_id, followed_actor) = local_followable(conn, &settings, &target)?;
        let target = FollowTarget {
            calendar_id,
            calendar_actor: &followed_actor,
        };
        let outcome = follows::follow(conn, &target, &follower, &inbox, &follow)
            .map_err(|e| Rejection::internal(&e))?;
        Ok(match outcome {
            FollowOutcome::Accepted => format!("{follower} follows {followed_actor}"),
            FollowOutcome::Pending => format!("follow of {followed_actor} waits for approval"),
        })
    })
    .await
}

async fn undo(context: &InboxContext, checked: Checked) -> Result<Receipt, Rejection> {
    let object = checked
        .activity
        .get("object")
        .cloned()
        .unwrap_or(Value::Null);
    if type_of(&object).is_some_and(|t| t != "Follow" && t != "Join") {
        return record_only(
            context,
            checked,
            "ignored: only Undo of Follow or Join is handled",
        )
        .await;
    }
    let settings = context.settings.clone();
    let follower = checked.envelope.actor.clone();
    let follow_id = id_of(&object).unwrap_or_default().to_owned();
    // Gancio's inner Follow has no actor; Mastodon embeds the whole Follow; some send its id.
    let target = object.get("object").and_then(id_of).map(str::to_owned);
    let undone_join = type_of(&object) == Some("Join");
    let now = checked.now;
    with_receipt(context, &checked, move |conn| {
        // An Undo of a Join gives the seat up; one that names only an id may be either.
        if undone_join || object.is_string() {
            let left = rsvp::incoming::undo_join(conn, &follower, &follow_id, now)
                .map_err(|e| federation_rejection(&e))?;
            if let Some(effect) = left {
                return Ok(effect);
            }
            if undone_join {
                let target = rsvp::incoming::resolve(conn, &settings.public_url, &object, now)
                    .map_err(|e| federation_rejection(&e))?;
                let sender = Sender {
                    actor_id: &follower,
                    inbox: "",
                };
                return rsvp::incoming::receive(
                    conn,
                    sender,
                    &object,
                    Intent::NotGoing,
                    target,
                    now,
                )
                .map_err(|e| federation_rejection(&e));
            }
        }
        let targets: Vec<Option<i64>> = if let Some(target) = target {
            vec![local_followable(conn, &settings, &target)?.0]
        } else {
            use crate::db::schema::followers;
            followers::table
                .filter(followers::actor_id.eq(&follower))
                .filter(followers::follow_activity_id.eq(&follow_id))
                .select(followers::calendar_id)
                .load(conn)?
        };
        let mut removed = 0;
        for id in targets {
            if follows::unfollow(conn, id, &follower).map_err(|e| Rejection::internal(&e))? {
                removed += 1;
            }
        }
        Ok(format!(
            "{follower} stopped following {removed} of our actors"
        ))
    })
    .await
}

/// Returns the Event object of a Create, Update or Invite; an Announce may wrap a Create.
fn event_object(activity: &Value) -> Option<&Value> {
    let object = activity.get("object")?;
    match type_of(object) {
        Some("Create" | "Update") => event_object(object),
        Some(kind) if EVENT_TYPES.contains(&kind) => Some(object),
        _ => None,
    }
}

async fn create_or_update(
    context: &InboxContext,
    checked: Checked,
    trust: Trust,
    budget: &mut FetchBudget,
) -> Result<Receipt, Rejection> {
    if trust == Trust::Untrusted {
        log_decision(
            &checked,
            "ignored",
            "peer is not trusted, content is not merged",
        );
        return record_only(context, checked, "ignored: this server is not trusted here").await;
    }
    let origin = domain_of(&checked.envelope.actor).unwrap_or_default();
    // Some servers send only the object's id; it is fetched from the sender's own host.
    if let Some(Value::String(object_id)) = checked.activity.get("object").cloned() {
        if domain_of(&object_id).as_deref() != Some(origin.as_str()) {
            log_decision(&checked, "ignored", "object id is not on the sender's host");
            return record_only(context, checked, "ignored: object is not the sender's").await;
        }
        return match fetch_event(context, budget, &object_id).await? {
            Ok(fetched) => store_event(context, checked, fetched, origin).await,
            Err(reason) => {
                log_decision(&checked, "ignored", &reason);
                record_only(context, checked, &format!("ignored: {reason}")).await
            }
        };
    }
    let Some(object) = event_object(&checked.activity).cloned() else {
        log_decision(&checked, "ignored", "object is not an Event");
        return record_only(context, checked, "ignored: object is not an Event").await;
    };
    store_event(context, checked, object, origin).await
}

/// Fetches the Event `object_id` from its origin. The inner error is the reason to ignore the
/// activity: the fetch failed, or the document is not that Event.
async fn fetch_event(
    context: &InboxContext,
    budget: &mut FetchBudget,
    object_id: &str,
) -> Result<Result<Value, String>, Rejection> {
    let signer = context.signer().await?;
    let fetched = match fetch_json(&context.settings, Some(&signer), budget, object_id).await {
        Ok(fetched) => fetched,
        Err(error) => return Ok(Err(format!("cannot fetch the object: {error}"))),
    };
    if id_of(&fetched) != Some(object_id) || type_of(&fetched) != Some("Event") {
        return Ok(Err(format!(
            "the document at {object_id} is not that Event"
        )));
    }
    Ok(Ok(fetched))
}

/// Reads and stores an Event whose origin is `origin`.
async fn store_event(
    context: &InboxContext,
    checked: Checked,
    object: Value,
    origin: String,
) -> Result<Receipt, Rejection> {
    let data = incoming::event(&object).map_err(|field| {
        log_decision(&checked, "rejected", &field.to_string());
        Rejection::invalid(&field)
    })?;
    if domain_of(&data.object_id).as_deref() != Some(origin.as_str()) {
        log_decision(&checked, "rejected", "object is not on its sender's host");
        return Err(Rejection {
            status: 422,
            field: Some("object.id".into()),
            value: Some(data.object_id.clone()),
            detail: format!("object {} does not belong to {origin}", data.object_id),
            limit: None,
        });
    }
    let actor_id = data
        .attributed_to
        .clone()
        .unwrap_or_else(|| checked.envelope.actor.clone());
    let now = checked.now;
    let json = object.to_string();
    let receipt = with_receipt(context, &checked, move |conn| {
        let stored =
            remote::upsert(conn, &origin, &actor_id, &data, &json, now).map_err(|e| match e {
                crate::federation::Error::Invalid(field) => Rejection::invalid(&field),
                other => Rejection::internal(&other),
            })?;
        log_moved(&stored);
        follow_remote_change(conn, &stored, &data.object_id, now)?;
        Ok(describe(&stored.outcome, &data.object_id))
    })
    .await?;
    log_decision(&checked, "processed", &receipt.effect);
    Ok(receipt)
}

/// Moves or removes our people's reminders for the remote events a change from their origin
/// touched, and marks cancelled their RSVPs whose occurrence is gone.
fn follow_remote_change(
    conn: &mut AnyConnection,
    stored: &remote::Stored,
    object_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    if matches!(stored.outcome, Outcome::Ignored(_)) {
        return Ok(());
    }
    let mut touched: Vec<i64> = stored.moved.iter().map(|m| m.remote_event_id).collect();
    if let Some(event) = remote::find(conn, object_id).map_err(|e| Rejection::internal(&e))? {
        touched.push(event.id);
    }
    touched.sort_unstable();
    touched.dedup();
    for id in touched {
        crate::notify::reminders::remote_event_changed(conn, id, now)
            .map_err(|e| Rejection::internal(&e))?;
        rsvp::outgoing::remote_event_changed(conn, id, now).map_err(|e| Rejection::internal(&e))?;
    }
    Ok(())
}

fn log_moved(stored: &remote::Stored) {
    for moved in &stored.moved {
        tracing::debug!(
            remote_event = moved.remote_event_id,
            recurrence_id = %moved.recurrence_id,
            old_start = %moved.old_start,
            new_start = ?moved.new_start,
            "remote occurrence moved"
        );
    }
}

fn describe(outcome: &Outcome, object_id: &str) -> String {
    match outcome {
        Outcome::Created => format!("stored event {object_id}"),
        Outcome::Updated => format!("updated event {object_id}"),
        Outcome::Deleted => format!("deleted event {object_id}"),
        Outcome::Ignored(reason) => format!("ignored {object_id}: {reason}"),
    }
}

/// When a Delete happened: the Tombstone's `deleted`, else the activity's `published`, else
/// now.
fn deletion_time(checked: &Checked) -> DateTime<Utc> {
    let object = checked.activity.get("object");
    [
        object.and_then(|o| o.get("deleted")),
        checked.activity.get("published"),
        object.and_then(|o| o.get("updated")),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_str)
    .find_map(|t| DateTime::parse_from_rfc3339(t).ok())
    .map_or(checked.now, |t| t.to_utc())
}

async fn delete(
    context: &InboxContext,
    checked: Checked,
    trust: Trust,
) -> Result<Receipt, Rejection> {
    if trust == Trust::Untrusted {
        log_decision(&checked, "ignored", "peer is not trusted");
        return record_only(context, checked, "ignored: this server is not trusted here").await;
    }
    // Mobilizon and Friendica send a Tombstone, Gancio the full Event, others only the id.
    let Some(object_id) = checked
        .activity
        .get("object")
        .and_then(id_of)
        .map(str::to_owned)
    else {
        return Err(Rejection {
            status: 422,
            field: Some("object".into()),
            value: None,
            detail: "Delete has no object id".into(),
            limit: None,
        });
    };
    let origin = domain_of(&checked.envelope.actor).unwrap_or_default();
    let version = deletion_time(&checked);
    let checked_now = checked.now;
    let receipt = with_receipt(context, &checked, move |conn| {
        let stored = remote::delete(conn, &origin, &object_id, version)
            .map_err(|e| Rejection::internal(&e))?;
        log_moved(&stored);
        follow_remote_change(conn, &stored, &object_id, checked_now)?;
        Ok(describe(&stored.outcome, &object_id))
    })
    .await?;
    log_decision(&checked, "processed", &receipt.effect);
    Ok(receipt)
}

/// An Announce by a relay: the embedded copy is not trusted, the object is fetched from its
/// origin, and the origin must be trusted.
async fn announce(
    context: &InboxContext,
    checked: Checked,
    budget: &mut FetchBudget,
) -> Result<Receipt, Rejection> {
    let object = checked
        .activity
        .get("object")
        .cloned()
        .unwrap_or(Value::Null);
    let inner = match type_of(&object) {
        Some("Create" | "Update") => object.get("object").cloned().unwrap_or(Value::Null),
        _ => object,
    };
    let Some(object_id) = id_of(&inner).map(str::to_owned) else {
        return record_only(context, checked, "ignored: Announce without an object id").await;
    };
    let origin = domain_of(&object_id).unwrap_or_default();
    let policy = context.settings.policy;
    let state = {
        let origin = origin.clone();
        context
            .db(move |conn| {
                peers::effective_state(conn, &origin, policy).map_err(|e| Rejection::internal(&e))
            })
            .await?
    };
    if state != PeerState::Trusted {
        log_decision(
            &checked,
            "ignored",
            "origin of the announced object is not trusted",
        );
        return record_only(
            context,
            checked,
            "ignored: origin of the announced object is not trusted",
        )
        .await;
    }
    match fetch_event(context, budget, &object_id).await? {
        Ok(fetched) => store_event(context, checked, fetched, origin).await,
        Err(reason) => {
            log_decision(&checked, "ignored", &reason);
            record_only(context, checked, &format!("ignored: {reason}")).await
        }
    }
}
