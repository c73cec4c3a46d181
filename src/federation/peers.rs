//! Peers: other servers and how far we trust them.
//!
//! A peer is *trusted* (its events are merged into our agenda), *pending* (known, not yet
//! trusted: its events are ignored) or *blocked* (its requests are rejected). A server with no
//! row is treated as pending, except under the open policy, where every server that is not
//! blocked counts as trusted.

use chrono::Utc;
use diesel::prelude::*;
use serde::Serialize;

use super::{Error, TrustPolicy};
use crate::calendar::validate::InvalidField;
use crate::db::schema::peers;
use crate::db::{AnyConnection, write_transaction};

/// Maximum length of a peer domain, in bytes.
pub const MAX_DOMAIN_LEN: usize = 253 + 6;

/// How far a peer is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Its events are merged.
    Trusted,
    /// Known but not trusted: its events are ignored.
    Pending,
    /// Its requests are rejected.
    Blocked,
}

impl PeerState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Trusted => "trusted",
            PeerState::Pending => "pending",
            PeerState::Blocked => "blocked",
        }
    }

    fn parse(text: &str) -> PeerState {
        match text {
            "trusted" => PeerState::Trusted,
            "blocked" => PeerState::Blocked,
            _ => PeerState::Pending,
        }
    }
}

/// A stored peer.
#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    /// Host, with the port when it is not the default.
    pub domain: String,
    /// Trust.
    pub state: PeerState,
    /// Its application actor, once resolved.
    pub actor_id: Option<String>,
    /// That actor's inbox.
    pub inbox: Option<String>,
    /// State of our Follow of that actor: `requested`, `accepted` or `rejected`.
    pub follow_state: Option<String>,
    /// The operator's reason for its state.
    pub reason: Option<String>,
}

type PeerRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn from_row((domain, state, actor_id, inbox, follow_state, reason): PeerRow) -> Peer {
    Peer {
        domain,
        state: PeerState::parse(&state),
        actor_id,
        inbox,
        follow_state,
        reason,
    }
}

/// Normalises a domain as typed by an operator: lowercase, no scheme or trailing dot. Anything
/// beyond a host and port (a path, a query, control characters, an empty label) is rejected
/// rather than cut off, so the peer recorded is the one the operator named.
pub fn normalise_domain(input: &str) -> Result<String, InvalidField> {
    let trimmed = input.trim();
    let bare = trimmed
        .split_once("://")
        .map_or(trimmed, |(_, rest)| rest)
        .trim_end_matches('/');
    let host_and_port_only = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && bare.split(':').next().is_some_and(|host| {
            host.trim_end_matches('.')
                .split('.')
                .all(|label| !label.is_empty())
        });
    let candidate = if host_and_port_only {
        super::domain_of(&format!("https://{bare}"))
    } else {
        None
    };
    match candidate {
        Some(domain) if !domain.is_empty() && domain.len() <= MAX_DOMAIN_LEN => Ok(domain),
        _ => Err(InvalidField::new(
            "domain",
            input,
            format!(
                "must be a host name, optionally with a port, of at most {MAX_DOMAIN_LEN} bytes"
            ),
        )),
    }
}

/// Finds a peer by domain.
pub fn find(conn: &mut AnyConnection, domain: &str) -> Result<Option<Peer>, Error> {
    let row: Option<PeerRow> = peers::table
        .filter(peers::domain.eq(domain))
        .select((
            peers::domain,
            peers::state,
            peers::actor_id,
            peers::inbox,
            peers::follow_state,
            peers::reason,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(from_row))
}

/// Lists every peer by domain.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<Peer>, Error> {
    let rows: Vec<PeerRow> = peers::table
        .order(peers::domain)
        .select((
            peers::domain,
            peers::state,
            peers::actor_id,
            peers::inbox,
            peers::follow_state,
            peers::reason,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Creates or changes a peer's state, keeping its resolved actor.
pub fn set_state(
    conn: &mut AnyConnection,
    domain: &str,
    state: PeerState,
    reason: Option<&str>,
) -> Result<Peer, Error> {
    let now = Utc::now().naive_utc();
    write_transaction(conn, |conn| {
        let changed = diesel::update(peers::table.filter(peers::domain.eq(domain)))
            .set((
                peers::state.eq(state.as_str()),
                peers::reason.eq(reason),
                peers::updated_at.eq(now),
            ))
            .execute(conn)?;
        if changed == 0 {
            diesel::insert_into(peers::table)
                .values((
                    peers::domain.eq(domain),
                    peers::state.eq(state.as_str()),
                    peers::reason.eq(reason),
                    peers::created_at.eq(now),
                    peers::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        find(conn, domain)?.ok_or_else(|| Error::NotFound(format!("peer {domain} vanished")))
    })
}

/// Records the application actor a peer resolved to and the id of our Follow of it.
pub fn set_actor(
    conn: &mut AnyConnection,
    domain: &str,
    actor_id: &str,
    inbox: &str,
    follow_id: &str,
) -> Result<(), Error> {
    diesel::update(peers::table.filter(peers::domain.eq(domain)))
        .set((
            peers::actor_id.eq(actor_id),
            peers::inbox.eq(inbox),
            peers::follow_activity_id.eq(follow_id),
            peers::follow_state.eq("requested"),
            peers::updated_at.eq(Utc::now().naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a peer actor's Accept or Reject of our Follow `follow_id`; returns whether the
/// Follow was ours and sent to that actor.
pub fn record_follow_answer(
    conn: &mut AnyConnection,
    actor_id: &str,
    follow_id: &str,
    accepted: bool,
) -> Result<bool, Error> {
    let changed = diesel::update(
        peers::table
            .filter(peers::actor_id.eq(actor_id))
            .filter(peers::follow_activity_id.eq(follow_id)),
    )
    .set((
        peers::follow_state.eq(if accepted { "accepted" } else { "rejected" }),
        peers::updated_at.eq(Utc::now().naive_utc()),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Returns the trust in force for `domain` under `policy`.
pub fn effective_state(
    conn: &mut AnyConnection,
    domain: &str,
    policy: TrustPolicy,
) -> Result<PeerState, Error> {
    let stored = find(conn, domain)?.map(|peer| peer.state);
    Ok(match (stored, policy) {
        (Some(PeerState::Blocked), _) => PeerState::Blocked,
        (Some(PeerState::Trusted), _) | (_, TrustPolicy::Open) => PeerState::Trusted,
        _ => PeerState::Pending,
    })
}

#[cfg(test)]
mod tests {
    use super::normalise_domain;

    #[test]
    fn domains_are_normalised_or_rejected() {
        for (input, expected) in [
            ("Events.Example", "events.example"),
            ("https://events.example/", "events.example"),
            ("events.example.", "events.example"),
            ("localhost:8081", "localhost:8081"),
        ] {
            assert_eq!(
                normalise_domain(input).ok().as_deref(),
                Some(expected),
                "{input}"
            );
        }
        for input in [
            "x/../y",
            "a\nb",
            "a..b",
            "[::1]",
            "",
            "events.example/path",
            "a b",
        ] {
            assert!(normalise_domain(input).is_err(), "{input:?} was accepted");
        }
    }
}
