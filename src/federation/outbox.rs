//! The outbox: every activity we emit is recorded here, in the caller's transaction.
//!
//! [`publish`] is the one way out for activities (Accept and Reject of a Follow today; Create,
//! Update and Delete of events as they are wired in). Request handlers never send over HTTP
//! themselves, so a crash after the commit loses nothing and a rollback sends nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use super::{Error, PUBLIC};
use crate::db::schema::outbox_activities;
use crate::db::{AnyConnection, write_transaction};

/// Most activities listed on one outbox page.
pub const PAGE_SIZE: i64 = 50;

/// An activity as recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Row id, increasing in publication order.
    pub id: i64,
    /// Our actor that published it.
    pub actor_id: String,
    /// The activity.
    pub activity: Value,
    /// Inbox URLs it is addressed to.
    pub recipients: Vec<String>,
    /// When it was published.
    pub published_at: DateTime<Utc>,
}

/// Records `activity` for delivery to `recipients` (inbox URLs), inside the caller's
/// transaction, and returns its row id.
///
/// Delivery is enqueued here: this is the single place where an outgoing activity becomes a
/// delivery, so the durable delivery queue gets one job per recipient inbox in the same
/// transaction (see [`super::deliver`]). Public activities are also listed in the actor's
/// outbox collection.
pub fn publish(
    conn: &mut AnyConnection,
    activity: &Value,
    recipients: &[String],
) -> Result<i64, Error> {
    let field = |name: &str| {
        activity
            .get(name)
            .and_then(super::incoming::id_of)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Invalid(crate::calendar::validate::InvalidField::new(
                    name,
                    "",
                    "is missing from the outgoing activity",
                ))
            })
    };
    let activity_id = field("id")?;
    let actor_id = field("actor")?;
    let kind = super::incoming::type_of(activity)
        .unwrap_or("Activity")
        .to_owned();
    let public = addressed_to_public(activity);
    let recipients_json = serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into());
    write_transaction(conn, |conn| {
        let id = diesel::insert_into(outbox_activities::table)
            .values((
                outbox_activities::activity_id.eq(&activity_id),
                outbox_activities::actor_id.eq(&actor_id),
                outbox_activities::kind.eq(&kind),
                outbox_activities::public.eq(public),
                outbox_activities::activity_json.eq(activity.to_string()),
                outbox_activities::recipients_json.eq(&recipients_json),
                outbox_activities::published_at.eq(Utc::now().naive_utc()),
            ))
            .returning(outbox_activities::id)
            .get_result(conn)?;
        super::deliver::enqueue(
            conn,
            &actor_id,
            &activity_id,
            activity,
            recipients,
            Utc::now(),
        )?;
        tracing::debug!(activity = %activity_id, actor = %actor_id, kind = %kind, recipients = recipients.len(), "activity published");
        Ok(id)
    })
}

fn addressed_to_public(activity: &Value) -> bool {
    ["to", "cc"].iter().any(|name| match activity.get(*name) {
        Some(Value::String(s)) => s == PUBLIC || s == "as:Public" || s == "Public",
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(PUBLIC)),
        _ => false,
    })
}

type Row = (i64, String, String, String, NaiveDateTime);

fn from_row((id, actor_id, json, recipients, published_at): Row) -> Recorded {
    Recorded {
        id,
        actor_id,
        activity: serde_json::from_str(&json).unwrap_or(Value::Null),
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        published_at: published_at.and_utc(),
    }
}

/// Lists every activity of `actor_id`, oldest first (public and addressed ones alike).
pub fn all_of_actor(conn: &mut AnyConnection, actor_id: &str) -> Result<Vec<Recorded>, Error> {
    let rows: Vec<Row> = outbox_activities::table
        .filter(outbox_activities::actor_id.eq(actor_id))
        .order(outbox_activities::id)
        .select((
            outbox_activities::id,
            outbox_activities::actor_id,
            outbox_activities::activity_json,
            outbox_activities::recipients_json,
            outbox_activities::published_at,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Activities of every actor published after row `after_id`, oldest first, at most `limit`.
pub fn since(conn: &mut AnyConnection, after_id: i64, limit: i64) -> Result<Vec<Recorded>, Error> {
    let rows: Vec<Row> = outbox_activities::table
        .filter(outbox_activities::id.gt(after_id))
        .order(outbox_activities::id)
        .limit(limit)
        .select((
            outbox_activities::id,
            outbox_activities::actor_id,
            outbox_activities::activity_json,
            outbox_activities::recipients_json,
            outbox_activities::published_at,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Returns the newest public activities of `actor_id` and how many public ones there are.
pub fn public_page(
    conn: &mut AnyConnection,
    actor_id: &str,
) -> Result<(i64, Vec<Recorded>), Error> {
    let base = outbox_activities::table
        .filter(outbox_activities::actor_id.eq(actor_id))
        .filter(outbox_activities::public.eq(true));
    let total = base.count().get_result(conn)?;
    let rows: Vec<Row> = base
        .order(outbox_activities::id.desc())
        .limit(PAGE_SIZE)
        .select((
            outbox_activities::id,
            outbox_activities::actor_id,
            outbox_activities::activity_json,
            outbox_activities::recipients_json,
            outbox_activities::published_at,
        ))
        .load(conn)?;
    Ok((total, rows.into_iter().map(from_row).collect()))
}

/// Returns the key a delivery of `actor_id` (one of our actors) is signed with: its `keyId` and
/// private key PEM. `None` when the id is not one of our actors.
///
/// The delivery worker calls this at send time, so keys are never copied into queued jobs.
pub fn signing_key(
    conn: &mut AnyConnection,
    public_url: &str,
    actor_id: &str,
) -> Result<Option<(String, String)>, Error> {
    let actor_key = if actor_id == super::actors::instance_id(public_url) {
        super::keys::INSTANCE.to_owned()
    } else if let Some(slug) = actor_id.strip_prefix(&format!("{public_url}/calendars/")) {
        match crate::calendar::store::find_calendar(conn, slug)? {
            Some(calendar) => super::keys::calendar_key(calendar.id),
            None => return Ok(None),
        }
    } else if let Some(person) = actor_id.strip_prefix(&format!("{public_url}/people/")) {
        super::keys::person_key(person)
    } else {
        return Ok(None);
    };
    let pair = super::keys::key_pair(conn, &actor_key)?;
    Ok(Some((format!("{actor_id}#main-key"), pair.private_key_pem)))
}
