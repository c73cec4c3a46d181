//! A person's email address and notification preferences, and the calendars they follow.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;

use super::{Channel, Error, check_person_id};
use crate::calendar::validate::InvalidField;
use crate::db::schema::{calendar_follows, calendars, people};
use crate::db::{AnyConnection, write_transaction};

/// Reminder offsets when a person sets none: 24 hours and 1 hour before the start, in minutes.
pub const DEFAULT_REMINDER_OFFSETS: [i32; 2] = [24 * 60, 60];
/// Maximum reminder offsets per person.
pub const MAX_REMINDER_OFFSETS: usize = 8;
/// Maximum reminder offset, in minutes (28 days).
pub const MAX_REMINDER_OFFSET_MINUTES: i32 = 28 * 24 * 60;
/// Maximum email address length, in characters (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Maximum calendars one person follows.
pub const MAX_FOLLOWS: i64 = 500;

/// Digest frequency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestFrequency {
    /// No digest.
    Off,
    /// Every day at the person's hour.
    Daily,
    /// Every Monday at the person's hour.
    Weekly,
}

impl DigestFrequency {
    /// Returns the stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFrequency::Off => "off",
            DigestFrequency::Daily => "daily",
            DigestFrequency::Weekly => "weekly",
        }
    }

    fn parse(text: &str) -> Option<DigestFrequency> {
        match text {
            "off" => Some(DigestFrequency::Off),
            "daily" => Some(DigestFrequency::Daily),
            "weekly" => Some(DigestFrequency::Weekly),
            _ => None,
        }
    }
}

/// A person's preferences.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Person {
    /// The person id.
    pub id: String,
    /// Address for the email channel.
    pub email: Option<String>,
    /// Channels reminders and digests use.
    pub channels: Vec<Channel>,
    /// Minutes before an occurrence's start at which reminders go out.
    pub reminder_offsets: Vec<i32>,
    /// Digest frequency.
    pub digest: DigestFrequency,
    /// Local hour (0–23) at which digests go out.
    pub digest_hour: u32,
    /// The person's IANA zone, for digest hours and times in messages.
    #[serde(serialize_with = "serialize_zone")]
    pub zone: Tz,
    /// Secret in unsubscribe links.
    #[serde(skip)]
    pub unsubscribe_token: String,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes fields by reference"
)]
fn serialize_zone<S: serde::Serializer>(zone: &Tz, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(zone.name())
}

impl Person {
    /// Returns the preferences of a person who never set any.
    pub fn defaults(id: &str) -> Person {
        Person {
            id: id.to_owned(),
            email: None,
            channels: vec![Channel::Push, Channel::Email],
            reminder_offsets: DEFAULT_REMINDER_OFFSETS.to_vec(),
            digest: DigestFrequency::Off,
            digest_hour: 8,
            zone: Tz::UTC,
            unsubscribe_token: String::new(),
        }
    }
}

/// A change to a person's preferences; `None` keeps the stored (or default) value.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesChange {
    /// New address; an empty string removes it.
    pub email: Option<String>,
    /// Channels.
    pub channels: Option<Vec<Channel>>,
    /// Reminder offsets in minutes before the start.
    pub reminder_offsets_minutes: Option<Vec<i32>>,
    /// Digest frequency.
    pub digest: Option<DigestFrequency>,
    /// Local digest hour, 0–23.
    pub digest_hour: Option<u32>,
    /// IANA zone name.
    pub zone: Option<String>,
}

#[derive(Queryable)]
struct PersonRow {
    id: String,
    email: Option<String>,
    channels: String,
    reminder_offsets: String,
    digest: String,
    digest_hour: i32,
    zone: String,
    unsubscribe_token: String,
    _created_at: NaiveDateTime,
    _updated_at: NaiveDateTime,
}

/// Loads a person's stored preferences.
pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Person>, Error> {
    let row = people::table.find(id).first::<PersonRow>(conn).optional()?;
    row.map(person_from_row).transpose()
}

/// Loads a person's preferences, or the defaults when none are stored.
pub fn find_or_default(conn: &mut AnyConnection, id: &str) -> Result<Person, Error> {
    Ok(find(conn, id)?.unwrap_or_else(|| Person::defaults(id)))
}

/// Applies `change` to the person's preferences (creating them from the defaults), then
/// re-plans their digest. Every field is checked before anything is written.
pub fn update(
    conn: &mut AnyConnection,
    id: &str,
    change: &PreferencesChange,
    now: DateTime<Utc>,
) -> Result<Person, Error> {
    check_person_id("id", id)?;
    write_transaction(conn, |conn| {
        let stored = find(conn, id)?;
        let is_new = stored.is_none();
        let mut person = stored.unwrap_or_else(|| Person::defaults(id));
        apply_change(&mut person, change)?;
        if is_new {
            person.unsubscribe_token = uuid::Uuid::new_v4().simple().to_string();
        }
        save(conn, &person, is_new, now)?;
        super::digests::plan_next(conn, &person, now)?;
        Ok(person)
    })
}

fn apply_change(person: &mut Person, change: &PreferencesChange) -> Result<(), InvalidField> {
    if let Some(email) = &change.email {
        person.email = if email.is_empty() {
            None
        } else {
            Some(check_email(email)?)
        };
    }
    if let Some(channels) = &change.channels {
        let mut unique = Vec::new();
        for channel in channels {
            if !unique.contains(channel) {
                unique.push(*channel);
            }
        }
        person.channels = unique;
    }
    if let Some(offsets) = &change.reminder_offsets_minutes {
        person.reminder_offsets = check_offsets(offsets)?;
    }
    if let Some(digest) = change.digest {
        person.digest = digest;
    }
    if let Some(hour) = change.digest_hour {
        if hour > 23 {
            return Err(InvalidField::new("digest_hour", hour, "must be 0 to 23"));
        }
        person.digest_hour = hour;
    }
    if let Some(zone) = &change.zone {
        person.zone = zone
            .parse()
            .map_err(|_| InvalidField::new("zone", zone, "is not an IANA time zone name"))?;
    }
    Ok(())
}

fn check_email(email: &str) -> Result<String, InvalidField> {
    let length = email.chars().count();
    if length > MAX_EMAIL_CHARS {
        return Err(InvalidField::new(
            "email",
            email,
            format!("is {length} characters long, the limit is {MAX_EMAIL_CHARS}"),
        ));
    }
    email
        .parse::<lettre::Address>()
        .map(|address| address.to_string())
        .map_err(|e| InvalidField::new("email", email, format!("is not an email address: {e}")))
}

fn check_offsets(offsets: &[i32]) -> Result<Vec<i32>, InvalidField> {
    if offsets.len() > MAX_REMINDER_OFFSETS {
        return Err(InvalidField::new(
            "reminder_offsets_minutes",
            format!("{} offsets", offsets.len()),
            format!("at most {MAX_REMINDER_OFFSETS} offsets are allowed"),
        ));
    }
    let mut unique = Vec::new();
    for (index, &minutes) in offsets.iter().enumerate() {
        if !(1..=MAX_REMINDER_OFFSET_MINUTES).contains(&minutes) {
            return Err(InvalidField::new(
                format!("reminder_offsets_minutes[{index}]"),
                minutes,
                format!("must be 1 to {MAX_REMINDER_OFFSET_MINUTES} minutes"),
            ));
        }
        if !unique.contains(&minutes) {
            unique.push(minutes);
        }
    }
    unique.sort_unstable_by(|a, b| b.cmp(a));
    Ok(unique)
}

fn save(
    conn: &mut AnyConnection,
    person: &Person,
    is_new: bool,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let channels: Vec<&str> = person.channels.iter().map(|c| c.as_str()).collect();
    let offsets = serde_json::to_string(&person.reminder_offsets)
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    let values = (
        people::email.eq(&person.email),
        people::channels.eq(channels.join(",")),
        people::reminder_offsets.eq(offsets),
        people::digest.eq(person.digest.as_str()),
        people::digest_hour.eq(person.digest_hour as i32),
        people::zone.eq(person.zone.name()),
        people::updated_at.eq(now.naive_utc()),
    );
    if is_new {
        diesel::insert_into(people::table)
            .values((
                people::id.eq(&person.id),
                people::unsubscribe_token.eq(&person.unsubscribe_token),
                people::created_at.eq(now.naive_utc()),
                values,
            ))
            .execute(conn)?;
    } else {
        diesel::update(people::table.find(&person.id))
            .set(values)
            .execute(conn)?;
    }
    Ok(())
}

fn person_from_row(row: PersonRow) -> Result<Person, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("person {:?} {what}", row.id));
    let channels = row
        .channels
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| Channel::parse(c).ok_or_else(|| corrupt("channels")))
        .collect::<Result<Vec<_>, _>>()?;
    let reminder_offsets: Vec<i32> =
        serde_json::from_str(&row.reminder_offsets).map_err(|_| corrupt("reminder offsets"))?;
    Ok(Person {
        email: row.email,
        channels,
        reminder_offsets,
        digest: DigestFrequency::parse(&row.digest).ok_or_else(|| corrupt("digest"))?,
        digest_hour: row.digest_hour.clamp(0, 23) as u32,
        zone: row.zone.parse().map_err(|_| corrupt("zone"))?,
        unsubscribe_token: row.unsubscribe_token,
        id: row.id,
    })
}

/// Turns off email for the person holding `token` (the List-Unsubscribe target): the email
/// channel is removed and the digest stopped. Returns the person id, or `None` for an
/// unknown token.
pub fn unsubscribe(
    conn: &mut AnyConnection,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    write_transaction(conn, |conn| {
        let Some(id) = people::table
            .filter(people::unsubscribe_token.eq(token))
            .select(people::id)
            .first::<String>(conn)
            .optional()?
        else {
            return Ok(None);
        };
        let mut person = find_or_default(conn, &id)?;
        person.channels.retain(|c| *c != Channel::Email);
        person.digest = DigestFrequency::Off;
        save(conn, &person, false, now)?;
        super::digests::plan_next(conn, &person, now)?;
        Ok(Some(id))
    })
}

/// Makes the person follow a calendar (for digests); following twice changes nothing.
pub fn follow(
    conn: &mut AnyConnection,
    person: &str,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    check_person_id("id", person)?;
    write_transaction(conn, |conn| {
        let calendar_id = calendar_id(conn, slug)?;
        let existing = calendar_follows::table
            .filter(calendar_follows::person.eq(person))
            .count()
            .get_result::<i64>(conn)?;
        let already = calendar_follows::table
            .find((person, calendar_id))
            .count()
            .get_result::<i64>(conn)?;
        if already > 0 {
            return Ok(());
        }
        if existing >= MAX_FOLLOWS {
            return Err(InvalidField::new(
                "calendar",
                slug,
                format!("the person follows {existing} calendars, the limit is {MAX_FOLLOWS}"),
            )
            .into());
        }
        diesel::insert_into(calendar_follows::table)
            .values((
                calendar_follows::person.eq(person),
                calendar_follows::calendar_id.eq(calendar_id),
                calendar_follows::created_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Stops following a calendar; `false` when the person did not follow it.
pub fn unfollow(conn: &mut AnyConnection, person: &str, slug: &str) -> Result<bool, Error> {
    let calendar_id = calendar_id(conn, slug)?;
    let deleted =
        diesel::delete(calendar_follows::table.find((person, calendar_id))).execute(conn)?;
    Ok(deleted > 0)
}

/// Lists the ids and slugs of the calendars a person follows, by slug.
pub fn follows(conn: &mut AnyConnection, person: &str) -> Result<Vec<(i64, String)>, Error> {
    Ok(calendar_follows::table
        .inner_join(calendars::table)
        .filter(calendar_follows::person.eq(person))
        .select((calendars::id, calendars::slug))
        .order(calendars::slug.asc())
        .load(conn)?)
}

fn calendar_id(conn: &mut AnyConnection, slug: &str) -> Result<i64, Error> {
    calendars::table
        .filter(calendars::slug.eq(slug))
        .select(calendars::id)
        .first::<i64>(conn)
        .optional()?
        .ok_or_else(|| Error::CalendarNotFound(slug.to_owned()))
}
