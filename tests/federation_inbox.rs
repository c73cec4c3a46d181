//! The inbox's order of checks and its trust gate, against a running server and fake peers on
//! 127.0.0.1: what is rejected, with which status, and what is never fetched or stored.

mod common;

use anyhow::Context;
use common::peer::{FakePeer, deliver, deliver_with_rotated_key, post, signed_headers};
use common::{Backend, Reply, TestServer, agent, run_cli};
use serde_json::{Value, json};

fn start(backend: Backend) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_env(
        backend,
        &[("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true")],
    )?;
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars",
        &json!({"slug": "club", "name": "Club", "default_zone": "Europe/Berlin"}),
    )?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Ok(server)
}

fn cli(server: &TestServer, args: &[&str]) -> anyhow::Result<String> {
    let out = run_cli(&server.db, args)?;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn create_event(peer: &FakePeer, n: u32, updated: &str) -> Value {
    let actor = format!("{}/users/org", peer.base);
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/activities/{n}-{updated}", peer.base),
        "type": "Create",
        "actor": actor,
        "object": {
            "id": format!("{}/events/{n}", peer.base),
            "type": "Event",
            "name": format!("Event {n}"),
            "startTime": "2027-03-03T18:00:00+01:00",
            "endTime": "2027-03-03T20:00:00+01:00",
            "timezone": "Europe/Berlin",
            "updated": updated,
        }
    })
}

fn follow(peer: &FakePeer, server: &TestServer, n: u32) -> Value {
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/follows/{n}", peer.base),
        "type": "Follow",
        "actor": format!("{}/users/org", peer.base),
        "object": format!("{}/calendars/club", server.base),
    })
}

fn agenda_count(server: &TestServer) -> anyhow::Result<usize> {
    let agenda = server
        .get("/api/v1/agenda?from=2027-03-01&to=2027-04-01")?
        .json()?;
    Ok(agenda["occurrences"].as_array().map_or(0, Vec::len))
}

fn problem(reply: &Reply) -> anyhow::Result<Value> {
    assert_eq!(
        reply.content_type, "application/problem+json",
        "{}",
        reply.body
    );
    reply.json()
}

fn unsigned_post_costs_no_fetch(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let body = create_event(&peer, 1, "2027-01-01T00:00:00Z").to_string();
    let reply = post(&server, "/inbox", &body, &[])?;
    assert_eq!(reply.status, 401);
    assert!(
        problem(&reply)?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Signature")
    );

    // A forged Signature with a wrong Digest fails before any fetch as well.
    let headers = vec![
        ("Digest".to_owned(), "SHA-256=AAAA".to_owned()),
        (
            "Signature".to_owned(),
            format!(
                "keyId=\"{}/users/org#main-key\",headers=\"(request-target) host date digest\",signature=\"AAAA\"",
                peer.base
            ),
        ),
    ];
    let reply = post(&server, "/inbox", &body, &headers)?;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(
        peer.seen().is_empty(),
        "no fetch before the cheap checks: {:?}",
        peer.seen()
    );
    Ok(())
}

fn stale_signature_is_rejected(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let activity = create_event(&peer, 1, "2027-01-01T00:00:00Z");
    let body = activity.to_string();
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    let headers = signed_headers(&server, "/inbox", &body, &activity, two_hours_ago)?;
    let reply = post(&server, "/inbox", &body, &headers)?;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(
        problem(&reply)?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("window")
    );
    assert!(peer.seen().is_empty());
    Ok(())
}

fn unknown_actor_is_401_not_500(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(
        problem(&reply)?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("404")
    );
    Ok(())
}

fn private_addresses_are_never_fetched(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    // The actor claims a link-local address; the server must refuse to fetch it.
    let mut activity = create_event(&peer, 1, "2027-01-01T00:00:00Z");
    activity["actor"] = json!("http://169.254.169.254/users/org");
    activity["id"] = json!("http://169.254.169.254/activities/1");
    let reply = deliver(&server, "/inbox", &activity)?;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let detail = problem(&reply)?["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("169.254.169.254") && detail.contains("private"),
        "{detail}"
    );
    Ok(())
}

fn untrusted_and_blocked_peers(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");

    // Unknown (pending) peer: accepted for delivery, never merged.
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.body.contains("not trusted"), "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 0);

    // Trusted: merged.
    cli(&server, &["peer", "trust", &peer.domain])?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 2, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);
    let agenda = server
        .get("/api/v1/agenda?from=2027-03-01&to=2027-04-01")?
        .json()?;
    assert_eq!(agenda["occurrences"][0]["origin"], peer.domain.as_str());
    assert_eq!(
        agenda["occurrences"][0]["start_utc"],
        "2027-03-03T17:00:00Z"
    );

    // Blocked: rejected, even for follows, and the listing shows it.
    cli(
        &server,
        &["peer", "block", &peer.domain, "--reason", "spam"],
    )?;
    let fetches_before = peer.seen().len();
    let reply = deliver(&server, "/inbox", &follow(&peer, &server, 1))?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        peer.seen().len(),
        fetches_before,
        "blocked peers are not fetched from"
    );
    let listing = cli(&server, &["peer", "list"])?;
    assert!(
        listing.contains(&format!("{}\tblocked", peer.domain)),
        "{listing}"
    );
    Ok(())
}

fn updates_only_from_origin_and_only_newer(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let origin = FakePeer::start()?;
    let other = FakePeer::start()?;
    for peer in [&origin, &other] {
        peer.add_actor("/users/org", "Person");
        cli(&server, &["peer", "trust", &peer.domain])?;
    }
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&origin, 1, "2027-01-02T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);

    // An older Update changes nothing.
    let mut older = create_event(&origin, 1, "2027-01-01T00:00:00Z");
    older["type"] = json!("Update");
    older["object"]["name"] = json!("Older title");
    let reply = deliver(&server, "/inbox", &older)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.body.contains("not newer"), "{}", reply.body);

    // Another trusted server cannot update the origin's object.
    let mut forged = create_event(&other, 9, "2027-02-01T00:00:00Z");
    forged["type"] = json!("Update");
    forged["object"]["id"] = json!(format!("{}/events/1", origin.base));
    forged["object"]["name"] = json!("Forged title");
    let reply = deliver(&server, "/inbox", &forged)?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(problem(&reply)?["field"], "object.id");

    // Nor delete it.
    let delete = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/deletes/1", other.base),
        "type": "Delete",
        "actor": format!("{}/users/org", other.base),
        "object": {"type": "Tombstone", "id": format!("{}/events/1", origin.base)},
    });
    let reply = deliver(&server, "/inbox", &delete)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.body.contains("belongs to"), "{}", reply.body);

    let agenda = server
        .get("/api/v1/agenda?from=2027-03-01&to=2027-04-01")?
        .json()?;
    assert_eq!(agenda["occurrences"][0]["title"], "Event 1");

    // A Delete that overtakes its Create leaves a tombstone: the late Create is ignored.
    let early_delete = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/deletes/5", origin.base),
        "type": "Delete",
        "actor": format!("{}/users/org", origin.base),
        "object": {"type": "Tombstone", "id": format!("{}/events/5", origin.base)},
    });
    let reply = deliver(&server, "/inbox", &early_delete)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let late = create_event(&origin, 5, "2027-01-01T00:00:00Z");
    let reply = deliver(&server, "/inbox", &late)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.body.contains("deleted"), "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);
    Ok(())
}

fn rotated_key_is_fetched_again(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    cli(&server, &["peer", "trust", &peer.domain])?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);

    // Same key id, new key: the cached key fails, so the actor is fetched once more.
    peer.add_actor_with_key("/users/org", "Person", true);
    let fetches_before = peer.seen().len();
    let event = create_event(&peer, 2, "2027-01-01T00:00:00Z");
    let reply = deliver_with_rotated_key(&server, "/inbox", &event)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(peer.seen().len(), fetches_before + 1);
    assert_eq!(agenda_count(&server)?, 2);
    Ok(())
}

fn create_by_id_is_fetched_from_origin(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    cli(&server, &["peer", "trust", &peer.domain])?;
    let full = create_event(&peer, 7, "2027-01-01T00:00:00Z");
    peer.serve("/events/7", full["object"].clone());
    let mut by_id = full.clone();
    by_id["object"] = json!(format!("{}/events/7", peer.base));
    let reply = deliver(&server, "/inbox", &by_id)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);
    let fetched = peer
        .seen()
        .iter()
        .any(|s| s.method == "GET" && s.target == "/events/7");
    assert!(fetched);
    Ok(())
}

fn open_policy_merges_unknown_peers(backend: Backend) -> anyhow::Result<()> {
    let server = TestServer::start_with_env(
        backend,
        &[
            ("ROSE_EVENTS_FEDERATION_ALLOW_LOCALHOST", "true"),
            ("ROSE_EVENTS_FEDERATION_POLICY", "open"),
        ],
    )?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);

    cli(&server, &["peer", "block", &peer.domain])?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 2, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        agenda_count(&server)?,
        0,
        "a blocked peer's earlier events leave the agenda too"
    );
    Ok(())
}

fn deleted_account_is_acknowledged(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    // The account is gone (its actor document returns 404) and announces its own deletion.
    let actor = format!("{}/users/gone", peer.base);
    let delete = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{actor}#delete"),
        "type": "Delete",
        "actor": actor,
        "object": actor,
    });
    let reply = deliver(&server, "/inbox", &delete)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    Ok(())
}

fn localhost_peer_needs_the_test_setting(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start_as("localhost")?;
    peer.add_actor("/users/org", "Person");
    cli(&server, &["peer", "trust", &peer.domain])?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);

    // Without the setting, the same peer is a loopback address and is never fetched.
    let strict = TestServer::start(backend)?;
    let other = FakePeer::start_as("localhost")?;
    other.add_actor("/users/org", "Person");
    cli(&strict, &["peer", "trust", &other.domain])?;
    let reply = deliver(
        &strict,
        "/inbox",
        &create_event(&other, 1, "2027-01-01T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("loopback"), "{}", reply.body);
    assert!(other.seen().is_empty());
    Ok(())
}

fn replay_has_no_second_effect(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let activity = follow(&peer, &server, 1);
    let body = activity.to_string();
    let headers = signed_headers(&server, "/inbox", &body, &activity, chrono::Utc::now())?;
    let reply = post(&server, "/inbox", &body, &headers)?;
    assert_eq!(reply.status, 202, "{}", reply.body);

    let undo = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{}/follows/1/undo", peer.base),
        "type": "Undo",
        "actor": format!("{}/users/org", peer.base),
        "object": activity,
    });
    let reply = deliver(&server, "/inbox", &undo)?;
    assert_eq!(reply.status, 202, "{}", reply.body);

    // The same bytes with the same signature, inside the window: no second follow.
    let reply = post(&server, "/inbox", &body, &headers)?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(reply.body.contains("duplicate"), "{}", reply.body);
    let followers = server.get("/calendars/club/followers")?.json()?;
    assert_eq!(followers["totalItems"], 0);
    Ok(())
}

fn body_limits_are_enforced(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let reply = post(&server, "/inbox", &huge, &[])?;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let body = problem(&reply)?;
    assert_eq!(body["field"], "body");
    assert_eq!(body["limit"], 256 * 1024);

    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let reply = post(&server, "/inbox", &deep, &[])?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        problem(&reply)?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("nested")
    );
    assert_eq!(problem(&reply)?["limit"], 32);

    let reply = post(&server, "/inbox", "{\"type\":\"Create\"}", &[])?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(problem(&reply)?["field"], "id");
    Ok(())
}

fn manual_approval_waits_for_a_decision(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let reply = server.send_json(
        "PUT",
        "/api/v1/calendars/club/federation",
        &json!({"manually_approves_followers": true}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let actor = server
        .get_accept("/calendars/club", "application/activity+json")?
        .json()?;
    assert_eq!(actor["manuallyApprovesFollowers"], true);

    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    let reply = deliver(&server, "/inbox", &follow(&peer, &server, 1))?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        server.get("/calendars/club/followers")?.json()?["totalItems"],
        0
    );

    let follower = format!("{}/users/org", peer.base);
    let reply = server.send_json(
        "POST",
        "/api/v1/calendars/club/followers/decision",
        &json!({"actor": follower, "accept": true}),
    )?;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let followers = server.get("/calendars/club/followers")?.json()?;
    assert_eq!(followers["orderedItems"], json!([follower]));

    let mut conn = server.db.connect()?;
    let calendar = format!("{}/calendars/club", server.base);
    let sent = rose_events::federation::outbox::all_of_actor(&mut conn, &calendar)?;
    let kinds: Vec<&str> = sent
        .iter()
        .filter_map(|r| r.activity["type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["Accept"]);
    Ok(())
}

fn discovery_documents(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let host = server.base.trim_start_matches("http://").to_owned();
    let finger = server
        .get(&format!("/.well-known/webfinger?resource=acct:club@{host}"))?
        .json()?;
    let calendar = format!("{}/calendars/club", server.base);
    let links = finger["links"].as_array().context("links")?;
    let own = links
        .iter()
        .find(|l| l["rel"] == "self")
        .context("self link")?;
    assert_eq!(own["href"], calendar.as_str());
    assert_eq!(own["type"], "application/activity+json");
    let missing = server.get(&format!(
        "/.well-known/webfinger?resource=acct:nobody@{host}"
    ))?;
    assert_eq!(missing.status, 404);

    let index = server.get("/.well-known/nodeinfo")?.json()?;
    assert_eq!(
        index["links"][0]["rel"],
        "http://nodeinfo.diaspora.software/ns/schema/2.1"
    );
    assert_eq!(
        index["links"][1]["rel"],
        "https://www.w3.org/ns/activitystreams#Application"
    );
    let instance = format!("{}/actor", server.base);
    assert_eq!(index["links"][1]["href"], instance.as_str());
    let nodeinfo = server.get("/nodeinfo/2.1")?.json()?;
    assert_eq!(nodeinfo["protocols"], json!(["activitypub"]));

    let reply = server.get_accept("/calendars/club", "application/activity+json")?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/activity+json");
    let actor = reply.json()?;
    assert_eq!(actor["type"], "Group");
    assert_eq!(actor["publicKey"]["owner"], calendar.as_str());
    assert!(
        actor["publicKey"]["publicKeyPem"]
            .as_str()
            .unwrap_or_default()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    // The key is made once and kept.
    let again = server
        .get_accept("/calendars/club", "application/activity+json")?
        .json()?;
    assert_eq!(actor["publicKey"], again["publicKey"]);

    let application = server.get("/actor")?.json()?;
    assert_eq!(application["type"], "Application");
    assert_eq!(server.get("/people/ada")?.status, 404);
    // A person gets an actor when they first act on remote events.
    let mut conn = server.db.connect()?;
    rose_events::federation::actors::ensure_person(&mut conn, "ada@club.example")?;
    let person = server.get("/people/ada@club.example")?;
    assert_eq!(person.status, 200, "{}", person.body);
    let person = person.json()?;
    assert_eq!(person["type"], "Person");
    assert_eq!(
        person["id"],
        format!("{}/people/ada@club.example", server.base)
    );
    assert_eq!(
        person["inbox"],
        format!("{}/people/ada@club.example/inbox", server.base)
    );
    let bad = server.get("/people/a%20b")?;
    assert_eq!(bad.status, 422);
    assert_eq!(problem(&bad)?["field"], "person");
    let long = "p".repeat(201);
    assert_eq!(server.get(&format!("/people/{long}"))?.status, 422);
    Ok(())
}

fn peer_add_falls_back_to_webfinger(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let actor = peer.add_actor("/federation/u/relay", "Application");
    peer.serve(
        &format!("/.well-known/webfinger?resource=acct:relay@{}", peer.domain),
        json!({
            "subject": format!("acct:relay@{}", peer.domain),
            "links": [{"rel": "self", "type": "application/activity+json", "href": actor}],
        }),
    );
    let out = cli(
        &server,
        &[
            "--federation-allow-localhost",
            "--public-url",
            &server.base,
            "peer",
            "add",
            &peer.domain,
        ],
    )?;
    assert!(out.contains(&actor), "{out}");
    let listing = cli(&server, &["peer", "list"])?;
    assert!(
        listing.contains(&format!("{}\tpending\t{actor}", peer.domain)),
        "{listing}"
    );
    Ok(())
}

fn peers_are_managed_by_cli_and_api(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    let actor = peer.add_actor("/relay", "Application");
    peer.serve(
        "/.well-known/nodeinfo",
        json!({"links": [
            {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": format!("{}/nodeinfo/2.1", peer.base)},
            {"rel": "https://www.w3.org/ns/activitystreams#Application", "href": actor},
        ]}),
    );
    let out = cli(
        &server,
        &[
            "--federation-allow-localhost",
            "--public-url",
            &server.base,
            "peer",
            "add",
            &peer.domain,
            "--trust",
        ],
    )?;
    assert!(out.contains(&actor), "{out}");
    let listing = cli(&server, &["peer", "list"])?;
    assert!(
        listing.contains(&format!("{}\ttrusted\t{actor}\trequested", peer.domain)),
        "{listing}"
    );

    // The Follow of the peer's application actor is recorded for delivery to its inbox.
    let mut conn = server.db.connect()?;
    let ours = format!("{}/actor", server.base);
    let sent = rose_events::federation::outbox::all_of_actor(&mut conn, &ours)?;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].activity["type"], "Follow");
    assert_eq!(sent[0].activity["object"], actor.as_str());
    assert_eq!(sent[0].recipients, vec![format!("{actor}/inbox")]);

    // The admin API needs a token and names a bad field.
    let path = format!("/api/v1/peers/{}", peer.domain);
    let anonymous = agent()
        .put(&server.url(&path))
        .send_json(json!({"state": "blocked"}));
    let anonymous = Reply::from_result(anonymous)?;
    assert_eq!(anonymous.status, 401);
    let reply = server.send_json("PUT", &path, &json!({"state": "friendly"}))?;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let body = problem(&reply)?;
    assert_eq!(body["field"], "state");
    assert_eq!(body["value"], "friendly");
    let reply = server.send_json(
        "PUT",
        &path,
        &json!({"state": "blocked", "reason": "abuse"}),
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let list = server.send_json("GET", "/api/v1/peers", &json!({}))?;
    let peers = list.json()?;
    let first = &peers["peers"][0];
    assert_eq!(first["state"], "blocked");
    assert_eq!(first["reason"], "abuse");

    // Adding through the API resolves and follows the same way.
    let second = FakePeer::start()?;
    let second_actor = second.add_actor("/actor", "Application");
    second.serve(
        "/.well-known/nodeinfo",
        json!({"links": [{"rel": "https://www.w3.org/ns/activitystreams#Application", "href": second_actor}]}),
    );
    let added = server.send_json(
        "POST",
        "/api/v1/peers",
        &json!({"domain": second.domain, "trust": true}),
    )?;
    assert_eq!(added.status, 201, "{}", added.body);
    let added = added.json()?;
    assert_eq!(added["actor_id"], second_actor.as_str());
    assert_eq!(added["state"], "trusted");
    assert_eq!(added["follow_state"], "requested");

    let unreachable =
        server.send_json("POST", "/api/v1/peers", &json!({"domain": "127.0.0.1:9"}))?;
    assert_eq!(unreachable.status, 422, "{}", unreachable.body);
    assert_eq!(problem(&unreachable)?["field"], "domain");
    let _ = peer
        .seen()
        .iter()
        .find(|s| s.method == "GET")
        .context("peer was queried")?;
    Ok(())
}

fn remote_events_meet_local_limits(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    cli(&server, &["peer", "trust", &peer.domain])?;
    let cases = [
        ("name", json!("a\u{0}b\u{1b}[31m"), "object.name"),
        (
            "endTime",
            json!("2037-03-03T20:00:00+01:00"),
            "object.endTime",
        ),
        (
            "startTime",
            json!("0000-01-01T00:00:00Z"),
            "object.startTime",
        ),
    ];
    for (n, (key, value, field)) in (1u32..).zip(cases) {
        let mut activity = create_event(&peer, n, "2027-01-02T00:00:00Z");
        activity["object"][key] = value;
        if key == "startTime" {
            activity["object"]["endTime"] = json!("0000-01-01T01:00:00Z");
        }
        let reply = deliver(&server, "/inbox", &activity)?;
        assert_eq!(reply.status, 422, "{key}: {}", reply.body);
        assert_eq!(problem(&reply)?["field"], field, "{}", reply.body);
    }
    let agenda = server.get("/api/v1/agenda?from=2027-01-01&to=2027-12-31")?;
    assert_eq!(agenda.json()?["occurrences"], json!([]));
    Ok(())
}

fn blocking_a_peer_hides_its_events(backend: Backend) -> anyhow::Result<()> {
    let server = start(backend)?;
    let peer = FakePeer::start()?;
    peer.add_actor("/users/org", "Person");
    cli(&server, &["peer", "trust", &peer.domain])?;
    let reply = deliver(
        &server,
        "/inbox",
        &create_event(&peer, 1, "2027-01-02T00:00:00Z"),
    )?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(agenda_count(&server)?, 1);
    cli(&server, &["peer", "block", &peer.domain])?;
    assert_eq!(
        agenda_count(&server)?,
        0,
        "a blocked peer's events leave the agenda"
    );
    cli(&server, &["peer", "trust", &peer.domain])?;
    assert_eq!(
        agenda_count(&server)?,
        1,
        "and come back when it is trusted again"
    );
    Ok(())
}

on_both_backends!(
    blocking_a_peer_hides_its_events,
    remote_events_meet_local_limits,
    unsigned_post_costs_no_fetch,
    stale_signature_is_rejected,
    unknown_actor_is_401_not_500,
    private_addresses_are_never_fetched,
    untrusted_and_blocked_peers,
    updates_only_from_origin_and_only_newer,
    replay_has_no_second_effect,
    rotated_key_is_fetched_again,
    create_by_id_is_fetched_from_origin,
    open_policy_merges_unknown_peers,
    deleted_account_is_acknowledged,
    localhost_peer_needs_the_test_setting,
    body_limits_are_enforced,
    manual_approval_waits_for_a_decision,
    discovery_documents,
    peers_are_managed_by_cli_and_api,
    peer_add_falls_back_to_webfinger,
);
