//! Followers of our calendars and of the instance actor: Follow, Accept, Reject and Undo.
//!
//! A Follow of a calendar that approves followers automatically is stored as accepted and
//! confirmed with an Accept at once. A calendar with manual approval stores it as pending until
//! an operator accepts or rejects it. Followers of the instance actor (peers that added us)
//! are always accepted and receive the events of every calendar. Responses go out through
//! [`super::outbox::publish`].

use chrono::Utc;
use diesel::prelude::*;
use serde_json::{Value, json};

use super::{Error, outbox};
use crate::db::schema::{calendar_federation, followers};
use crate::db::{AnyConnection, write_transaction};

diesel::define_sql_function! {
    /// SQL `COALESCE` of a nullable id with a default.
    fn coalesce(value: diesel::sql_types::Nullable<diesel::sql_types::BigInt>, default: diesel::sql_types::BigInt) -> diesel::sql_types::BigInt;
}

/// Stands for "no calendar" (the instance actor) in comparisons; ids start at 1.
const INSTANCE_TARGET: i64 = 0;

/// Filter on the followed actor: a calendar, or the instance when `None`.
fn followed(
    calendar_id: Option<i64>,
) -> diesel::dsl::Eq<coalesce<followers::calendar_id, i64>, i64> {
    coalesce(followers::calendar_id, INSTANCE_TARGET).eq(calendar_id.unwrap_or(INSTANCE_TARGET))
}

/// A follower of a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// The follower's actor id.
    pub actor_id: String,
    /// Its inbox.
    pub inbox: String,
    /// Whether the follow was accepted (else it waits for approval).
    pub accepted: bool,
}

/// Whether `calendar_id` approves followers by hand.
pub fn manually_approves(conn: &mut AnyConnection, calendar_id: i64) -> Result<bool, Error> {
    Ok(calendar_federation::table
        .find(calendar_id)
        .select(calendar_federation::manually_approves_followers)
        .first(conn)
        .optional()?
        .unwrap_or(false))
}

/// Sets whether `calendar_id` approves followers by hand.
pub fn set_manual_approval(
    conn: &mut AnyConnection,
    calendar_id: i64,
    manual: bool,
) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        diesel::delete(calendar_federation::table.find(calendar_id)).execute(conn)?;
        diesel::insert_into(calendar_federation::table)
            .values((
                calendar_federation::calendar_id.eq(calendar_id),
                calendar_federation::manually_approves_followers.eq(manual),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Followers of a calendar (or of the instance for `None`), accepted and pending, by actor id.
pub fn list(conn: &mut AnyConnection, calendar_id: Option<i64>) -> Result<Vec<Follower>, Error> {
    let rows: Vec<(String, String, String)> = followers::table
        .filter(followed(calendar_id))
        .order(followers::actor_id)
        .select((followers::actor_id, followers::inbox, followers::state))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(actor_id, inbox, state)| Follower {
            actor_id,
            inbox,
            accepted: state == "accepted",
        })
        .collect())
}

/// What a Follow led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowOutcome {
    /// Accepted; an Accept was published.
    Accepted,
    /// Stored for approval.
    Pending,
}

/// The followed side of a Follow: a calendar or the instance actor.
#[derive(Debug, Clone)]
pub struct FollowTarget<'a> {
    /// Calendar database id, or `None` for the instance actor.
    pub calendar_id: Option<i64>,
    /// The followed actor's id.
    pub calendar_actor: &'a str,
}

/// Stores a Follow of a calendar and, unless the calendar approves by hand, accepts it.
pub fn follow(
    conn: &mut AnyConnection,
    target: &FollowTarget<'_>,
    follower: &str,
    inbox: &str,
    follow: &Value,
) -> Result<FollowOutcome, Error> {
    let manual = match target.calendar_id {
        Some(id) => manually_approves(conn, id)?,
        None => false,
    };
    let follow_id = super::incoming::id_of(follow)
        .unwrap_or_default()
        .to_owned();
    write_transaction(conn, |conn| {
        diesel::delete(
            followers::table
                .filter(followed(target.calendar_id))
                .filter(followers::actor_id.eq(follower)),
        )
        .execute(conn)?;
        diesel::insert_into(followers::table)
            .values((
                followers::calendar_id.eq(target.calendar_id),
                followers::actor_id.eq(follower),
                followers::inbox.eq(inbox),
                followers::follow_activity_id.eq(&follow_id),
                followers::follow_json.eq(follow.to_string()),
                followers::state.eq(if manual { "pending" } else { "accepted" }),
                followers::created_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn)?;
        if manual {
            return Ok(FollowOutcome::Pending);
        }
        answer(
            conn,
            target.calendar_actor,
            follower,
            inbox,
            follow,
            "Accept",
        )?;
        Ok(FollowOutcome::Accepted)
    })
}

/// Accepts or rejects a pending follower; a rejected one is removed.
pub fn decide(
    conn: &mut AnyConnection,
    target: &FollowTarget<'_>,
    follower: &str,
    accept: bool,
) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        let found: Option<(String, String)> = followers::table
            .filter(followed(target.calendar_id))
            .filter(followers::actor_id.eq(follower))
            .filter(followers::state.eq("pending"))
            .select((followers::inbox, followers::follow_json))
            .first(conn)
            .optional()?;
        let Some((inbox, follow_json)) = found else {
            return Ok(false);
        };
        let follow: Value = serde_json::from_str(&follow_json).unwrap_or(Value::Null);
        let rows = followers::table
            .filter(followed(target.calendar_id))
            .filter(followers::actor_id.eq(follower));
        if accept {
            diesel::update(rows)
                .set(followers::state.eq("accepted"))
                .execute(conn)?;
        } else {
            diesel::delete(rows).execute(conn)?;
        }
        let kind = if accept { "Accept" } else { "Reject" };
        answer(conn, target.calendar_actor, follower, &inbox, &follow, kind)?;
        Ok(true)
    })
}

/// Removes a follower after an Undo of its Follow; returns whether one was removed.
pub fn unfollow(
    conn: &mut AnyConnection,
    calendar_id: Option<i64>,
    follower: &str,
) -> Result<bool, Error> {
    let removed = diesel::delete(
        followers::table
            .filter(followed(calendar_id))
            .filter(followers::actor_id.eq(follower)),
    )
    .execute(conn)?;
    Ok(removed > 0)
}

/// Publishes an Accept or Reject whose object is the Follow as received, which is what
/// Mastodon and Gancio match on.
fn answer(
    conn: &mut AnyConnection,
    calendar_actor: &str,
    follower: &str,
    inbox: &str,
    follow: &Value,
    kind: &str,
) -> Result<(), Error> {
    let activity = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{calendar_actor}#{}/{}", kind.to_ascii_lowercase(), uuid::Uuid::new_v4()),
        "type": kind,
        "actor": calendar_actor,
        "to": [follower],
        "object": follow,
    });
    outbox::publish(conn, &activity, &[inbox.to_owned()])?;
    Ok(())
}

/// Inboxes that receive the public activities of a calendar: its accepted followers and those
/// of the instance actor, each inbox once however its actors spell it.
pub fn audience_inboxes(conn: &mut AnyConnection, calendar_id: i64) -> Result<Vec<String>, Error> {
    let stored: Vec<String> = followers::table
        .filter(
            followers::calendar_id
                .eq(calendar_id)
                .or(followers::calendar_id.is_null()),
        )
        .filter(followers::state.eq("accepted"))
        .select(followers::inbox)
        .load(conn)?;
    let mut inboxes: Vec<String> = stored.into_iter().map(normalize_inbox).collect();
    inboxes.sort();
    inboxes.dedup();
    Ok(inboxes)
}

/// Writes an inbox URL in the WHATWG URL form: lowercase host, no default port, IPv6 literal
/// compressed. Followers on one server may name its shared inbox in different spellings, which
/// would each get a copy of every activity. A text that is no URL is kept as it is.
fn normalize_inbox(inbox: String) -> String {
    match url::Url::parse(&inbox) {
        Ok(parsed) => parsed.into(),
        Err(_) => inbox,
    }
}
