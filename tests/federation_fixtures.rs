//! Every fixture in `federation-fixtures/` delivered, correctly signed, to a running server:
//! what it stores from each shape (instant, zone, place, capacity), and what it rejects.

mod common;

use std::collections::HashMap;

use anyhow::Context;
use common::peer::{FakePeer, deliver};
use common::{Backend, Reply, TestServer, run_cli};
use rose_events::federation::remote::{self, RemoteEvent};
use serde_json::Value;

/// Fake peers standing in for the made-up hosts of the fixtures.
struct World {
    server: TestServer,
    peers: HashMap<String, FakePeer>,
}

impl World {
    fn start(backend: Backend, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut all = vec![("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")];
        all.extend_from_slice(env);
        let server = TestServer::start_with_env(backend, &all)?;
        let reply = server.send_json(
            "POST",
            "/api/v1/calendars",
            &serde_json::json!({"slug": "fixtures", "name": "Fixtures"}),
        )?;
        assert_eq!(reply.status, 201, "{}", reply.body);
        Ok(World {
            server,
            peers: HashMap::new(),
        })
    }

    /// The fake peer for `host`, started (and trusted unless `untrusted`) on first use.
    fn peer(&mut self, host: &str, trusted: bool) -> anyhow::Result<&FakePeer> {
        if !self.peers.contains_key(host) {
            let peer = FakePeer::start()?;
            if trusted {
                let out = run_cli(&self.server.db, &["peer", "trust", &peer.domain])?;
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            self.peers.insert(host.to_owned(), peer);
        }
        self.peers.get(host).context("peer was just inserted")
    }

    /// Reads a fixture with every `https://<host>` replaced by its fake peer.
    fn load(&mut self, path: &str, untrusted: &[&str]) -> anyhow::Result<Value> {
        let full = format!("{}/federation-fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        let mut text = std::fs::read_to_string(&full).with_context(|| full.clone())?;
        text = text.replace("https://rose.example", &self.server.base);
        for host in hosts_in(&text) {
            let base = self
                .peer(&host, !untrusted.contains(&host.as_str()))?
                .base
                .clone();
            text = text.replace(&format!("https://{host}"), &base);
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Serves an object fixture at the path of its id on the peer that owns it.
    fn serve_object(&mut self, path: &str) -> anyhow::Result<()> {
        let object = self.load(path, &[])?;
        let id = object["id"].as_str().context("object id")?.to_owned();
        let peer = self.owner(&id)?;
        peer.serve(&path_of(&id, &peer.base), object);
        Ok(())
    }

    fn owner(&self, url: &str) -> anyhow::Result<&FakePeer> {
        self.peers
            .values()
            .find(|p| url.starts_with(&p.base))
            .with_context(|| format!("no fake peer serves {url}"))
    }

    /// Delivers an activity fixture signed by its actor.
    fn deliver(&mut self, path: &str, untrusted: &[&str]) -> anyhow::Result<Reply> {
        let activity = self.load(path, untrusted)?;
        let actor = activity["actor"].as_str().context("actor")?.to_owned();
        let peer = self.owner(&actor)?;
        peer.add_actor(&path_of(&actor, &peer.base), "Person");
        deliver(&self.server, "/inbox", &activity)
    }

    fn stored(&self, object_id: &str) -> anyhow::Result<Option<RemoteEvent>> {
        let mut conn = self.server.db.connect()?;
        Ok(remote::find(&mut conn, object_id)?)
    }

    /// A fixture URL as rewritten for this run.
    fn url(&self, fixture_url: &str) -> String {
        let mut out = fixture_url.to_owned();
        for (host, peer) in &self.peers {
            out = out.replace(&format!("https://{host}"), &peer.base);
        }
        out
    }
}

fn path_of(url: &str, base: &str) -> String {
    url.strip_prefix(base).unwrap_or(url).to_owned()
}

/// The distinct `*.example` hosts named in a fixture.
fn hosts_in(text: &str) -> Vec<String> {
    let mut hosts: Vec<String> = text
        .split("https://")
        .skip(1)
        .filter_map(|rest| {
            let host: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            host.ends_with(".example").then_some(host)
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[expect(clippy::expect_used, reason = "every caller passes a literal instant")]
fn utc(text: &str) -> chrono::NaiveDateTime {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("valid test instant")
        .naive_utc()
}

fn occurrences(world: &World, event: &RemoteEvent) -> anyhow::Result<Vec<String>> {
    let mut conn = world.server.db.connect()?;
    Ok(remote::occurrences_of(&mut conn, event.id)?
        .into_iter()
        .map(|(start, end)| format!("{}/{}", start.to_rfc3339(), end.to_rfc3339()))
        .collect())
}

fn mobilizon(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[])?;
    let reply = world.deliver("mobilizon/activities/create-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://mobilizon.example/events/0d7d9a3e-5c1b-4a8e-9a7c-1f2e3d4c5b6a");
    let event = world.stored(&id)?.context("create stored the event")?;
    assert_eq!(event.title, "Repair café");
    assert_eq!(event.start_at, utc("2027-04-24T12:00:00Z"));
    assert_eq!(event.end_at, Some(utc("2027-04-24T15:00:00Z")));
    assert_eq!(event.zone.as_deref(), Some("Europe/Paris"));
    assert_eq!(event.capacity, Some(30));
    assert_eq!(event.remaining_capacity, Some(12));
    let place = event.place().context("place")?;
    assert_eq!(place.name.as_deref(), Some("Maison des associations"));
    assert_eq!(place.street.as_deref(), Some("12 rue des Lilas"));
    assert_eq!(place.locality.as_deref(), Some("Lyon"));
    assert_eq!(place.latitude, Some(45.767));
    let online = world.url("https://visio.example/repair");
    assert_eq!(event.online_url, Some(online));

    // The Update reuses the activity id; it is newer, so it replaces the stored copy.
    let reply = world.deliver("mobilizon/activities/update-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let event = world.stored(&id)?.context("still stored")?;
    assert_eq!(event.start_at, utc("2027-04-24T13:00:00Z"));
    assert_eq!(event.remaining_capacity, Some(0));
    assert_eq!(occurrences(&world, &event)?.len(), 1);

    // A late copy of the older Create changes nothing.
    let reply = world.deliver("mobilizon/activities/create-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let event = world.stored(&id)?.context("still stored")?;
    assert_eq!(event.start_at, utc("2027-04-24T13:00:00Z"));

    let reply = world.deliver("mobilizon/activities/delete-tombstone.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let event = world
        .stored(&id)?
        .context("deleted events keep their row")?;
    assert!(event.deleted);
    assert!(occurrences(&world, &event)?.is_empty());

    // The relay is not trusted and its embedded copy is altered; the origin's copy is stored.
    world.serve_object("mobilizon/objects/announced-event.json")?;
    let reply = world.deliver(
        "mobilizon/activities/relay-announce.json",
        &["mobilizon-relay.example"],
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://mobilizon.example/events/7e8f9a0b-1111-4222-8333-444455556666");
    let event = world.stored(&id)?.context("announced event stored")?;
    assert_eq!(event.title, "Bike workshop");
    assert_eq!(event.start_at, utc("2027-05-08T08:00:00Z"));
    assert_eq!(event.capacity, None, "0 seats means unlimited");
    assert_eq!(event.origin, world.peer("mobilizon.example", true)?.domain);
    Ok(())
}

fn gancio(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[])?;
    let reply = world.deliver("gancio/activities/create-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://gancio.example/federation/m/118");
    let event = world.stored(&id)?.context("stored")?;
    assert_eq!(event.start_at, utc("2027-07-17T19:00:00Z"));
    assert_eq!(event.end_at, None, "Gancio sent no endTime");
    assert_eq!(event.zone, None, "an offset is not a zone");
    let place = event.place().context("place")?;
    assert_eq!(place.name.as_deref(), Some("Piazza Grande"));
    assert_eq!(
        place.street.as_deref(),
        Some("Piazza Grande 1, 41121 Modena")
    );
    let online = world.url("https://stream.gancio.example/concerto");
    assert_eq!(event.online_url, Some(online));
    assert_eq!(event.capacity, None);
    let spans = occurrences(&world, &event)?;
    assert_eq!(
        spans,
        vec!["2027-07-17T19:00:00+00:00/2027-07-17T21:00:00+00:00"]
    );

    let reply = world.deliver("gancio/activities/delete-full-object.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(world.stored(&id)?.context("row kept")?.deleted);
    Ok(())
}

fn friendica_and_hubzilla(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[])?;
    let reply = world.deliver("friendica/activities/create-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://friendica.example/objects/a1b2c3d4-0000-4000-8000-00000000f001");
    let event = world.stored(&id)?.context("stored")?;
    assert_eq!(event.start_at, utc("2027-09-10T17:30:00Z"));
    assert_eq!(event.end_at, Some(utc("2027-09-10T20:00:00Z")));
    assert_eq!(event.zone, None);
    let place = event.place().context("place")?;
    assert_eq!(place.latitude, Some(47.9959), "string coordinates are read");
    assert_eq!(place.longitude, Some(7.8522));
    assert_eq!(
        place.name.as_deref(),
        Some("Gasthaus Linde, Hauptstraße 3, Freiburg")
    );

    // `-00:00` without a zone has no instant: rejected, naming the field, storing nothing.
    let reply = world.deliver("hubzilla/activities/invite-event-floating.json", &[])?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.content_type, "application/problem+json");
    let problem = reply.json()?;
    assert_eq!(problem["field"], "object.startTime");
    assert_eq!(problem["value"], "2027-06-12T09:00:00-00:00");
    let floating = world.url("https://hubzilla.example/event/5f6e7d8c0000400080000000000000h1");
    assert!(world.stored(&floating)?.is_none());

    let reply = world.deliver("hubzilla/activities/invite-event-adjusted.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://hubzilla.example/event/5f6e7d8c0000400080000000000000h2");
    let event = world.stored(&id)?.context("stored")?;
    assert_eq!(event.title, "Board meeting");
    assert_eq!(event.start_at, utc("2027-06-15T16:00:00Z"));
    let place = event.place().context("place")?;
    assert_eq!(place.name.as_deref(), Some("Town hall, room 2"));
    Ok(())
}

fn wordpress_and_rose(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[])?;
    let reply = world.deliver("wordpress-event-bridge/activities/create-event.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://wordpress.example/?p=318");
    let event = world.stored(&id)?.context("query-string id kept")?;
    assert_eq!(event.start_at, utc("2027-11-12T23:30:00Z"));
    assert_eq!(event.zone.as_deref(), Some("America/New_York"));
    assert_eq!(
        event.place().context("place")?.locality.as_deref(),
        Some("Springfield")
    );
    assert_eq!(event.capacity, None);

    // The reminder Announce names the object by id only; it is fetched and is not newer.
    world.serve_object("wordpress-event-bridge/objects/event.json")?;
    let reply = world.deliver(
        "wordpress-event-bridge/activities/announce-reminder.json",
        &[],
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let fetched = world
        .owner(&id)?
        .seen()
        .iter()
        .any(|seen| seen.method == "GET" && seen.target == "/?p=318");
    assert!(fetched, "the announced object is fetched from its origin");
    assert_eq!(
        occurrences(&world, &world.stored(&id)?.context("kept")?)?.len(),
        1
    );

    let reply = world.deliver("rose-events/activities/create-series.json", &[])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = world.url("https://rose-peer.example/events/9");
    let event = world.stored(&id)?.context("stored")?;
    assert_eq!(event.zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(event.capacity, Some(40));
    let spans = occurrences(&world, &event)?;
    assert_eq!(
        spans,
        vec![
            "2027-01-05T18:00:00+00:00/2027-01-05T20:00:00+00:00",
            "2027-01-12T18:00:00+00:00/2027-01-12T20:00:00+00:00",
            "2027-01-26T18:00:00+00:00/2027-01-26T20:00:00+00:00",
        ],
        "weekly, four times, the third excluded"
    );

    // The agenda lists remote occurrences with their origin.
    let agenda = world
        .server
        .get("/api/v1/agenda?from=2027-01-01&to=2027-02-01")?
        .json()?;
    let entries = agenda["occurrences"].as_array().context("occurrences")?;
    assert_eq!(entries.len(), 3, "{agenda}");
    let origin = world.owner(&id)?.domain.clone();
    assert!(entries.iter().all(|e| e["origin"] == origin.as_str()));
    assert_eq!(entries[0]["start"], "2027-01-05T19:00:00+01:00");
    assert_eq!(entries[0]["location"], "Kulturhaus, Leipzig, DE");
    Ok(())
}

fn mastodon_follow_and_undo(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[])?;
    let reply = world.deliver("mastodon/activities/follow.json", &["mastodon.example"])?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let followers = world.server.get("/calendars/fixtures/followers")?.json()?;
    let ada = world.url("https://mastodon.example/users/ada");
    assert_eq!(followers["orderedItems"], serde_json::json!([ada]));

    // The Accept is recorded for delivery, with the Follow as its object.
    let mut conn = world.server.db.connect()?;
    let calendar = format!("{}/calendars/fixtures", world.server.base);
    let sent = rose_events::federation::outbox::all_of_actor(&mut conn, &calendar)?;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].activity["type"], "Accept");
    assert_eq!(
        sent[0].activity["object"]["id"],
        world.url("https://mastodon.example/3f0d5e8a-7b6c-4d2e-9f10-112233445566")
    );
    assert_eq!(sent[0].recipients, vec![format!("{ada}/inbox")]);

    let reply = world.deliver(
        "mastodon/activities/undo-follow.json",
        &["mastodon.example"],
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let followers = world.server.get("/calendars/fixtures/followers")?.json()?;
    assert_eq!(followers["totalItems"], 0);
    Ok(())
}

/// Event times keep their instant whatever the server's own zone is.
fn event_times_keep_their_instant(backend: Backend) -> anyhow::Result<()> {
    let mut world = World::start(backend, &[("TZ", "America/Sao_Paulo")])?;
    let path = format!(
        "{}/tests/data/federation/event_times.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let peer_base = world.peer("agenda.example.org", true)?.base.clone();
    let actor_path = "/actors/tomas";
    world
        .peer("agenda.example.org", true)?
        .add_actor(actor_path, "Person");
    for case in data["inbound"].as_array().context("inbound")? {
        let name = case["desc"].as_str().unwrap_or_default();
        let text = case["activity"]
            .to_string()
            .replace("https://agenda.example.org", &peer_base);
        let activity: Value = serde_json::from_str(&text)?;
        let reply = deliver(&world.server, "/inbox", &activity)?;
        let object_id = activity["object"]["id"].as_str().unwrap_or_default();
        let stored = world.stored(object_id)?;
        let expected = &case["expected"];
        if expected["accepted"] == true {
            assert_eq!(reply.status, 202, "{name}: {}", reply.body);
            let event = stored.with_context(|| format!("{name} stored"))?;
            let start = expected["start_utc"].as_str().context("start_utc")?;
            let end = expected["end_utc"].as_str().context("end_utc")?;
            assert_eq!(event.start_at, utc(start), "{name}");
            assert_eq!(event.end_at, Some(utc(end)), "{name}");
        } else {
            assert_eq!(reply.status, 422, "{name}: {}", reply.body);
            assert!(stored.is_none(), "{name} must store nothing");
        }
    }
    Ok(())
}

on_both_backends!(
    mobilizon,
    gancio,
    friendica_and_hubzilla,
    wordpress_and_rose,
    mastodon_follow_and_undo,
    event_times_keep_their_instant,
);
