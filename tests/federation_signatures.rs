//! HTTP signature checks on recorded requests signed with throw-away keys: which algorithms
//! verify, and which signed times are inside the window. The clock is fixed to the time the
//! requests were made.

use anyhow::Context;
use base64::Engine;
use rose_events::federation::signature::{RequestParts, verify_request};
use serde_json::Value;

struct Case {
    name: String,
    headers: Vec<(String, String)>,
    method: String,
    path: String,
    body: Vec<u8>,
    key_pem: String,
    expected: Vec<u64>,
}

fn load(file: &str) -> anyhow::Result<(chrono::DateTime<chrono::Utc>, Vec<Case>)> {
    let path = format!(
        "{}/tests/data/federation/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let now =
        chrono::DateTime::parse_from_rfc3339(data["server_now"].as_str().context("server_now")?)?
            .to_utc();
    let mut cases = Vec::new();
    for case in data["cases"].as_array().context("cases")? {
        if case.get("replay_of").is_some() {
            continue;
        }
        let request = &case["request"];
        let headers: Vec<(String, String)> = request["headers"]
            .as_object()
            .context("headers")?
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let signature = headers
            .iter()
            .find(|(k, _)| k == "signature")
            .map(|(_, v)| v.clone());
        let key_id = signature
            .as_deref()
            .and_then(|s| s.split("keyId=\"").nth(1))
            .and_then(|s| s.split('"').next())
            .unwrap_or_default();
        let actor = key_id.split('#').next().unwrap_or_default();
        let key_pem = data["actors"][actor]["publicKey"]["publicKeyPem"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let expected = &case["expected"];
        let expected = match expected.get("status") {
            Some(status) => vec![status.as_u64().context("status")?],
            None => expected["status_one_of"]
                .as_array()
                .context("status_one_of")?
                .iter()
                .filter_map(Value::as_u64)
                .collect(),
        };
        cases.push(Case {
            name: format!(
                "case {} ({})",
                case["case"].as_str().unwrap_or_default(),
                case["desc"].as_str().unwrap_or_default()
            ),
            headers,
            method: request["method"].as_str().unwrap_or("POST").to_owned(),
            path: request["path"].as_str().unwrap_or("/inbox").to_owned(),
            body: base64::engine::general_purpose::STANDARD
                .decode(request["body_b64"].as_str().unwrap_or_default())?,
            key_pem,
            expected,
        });
    }
    Ok((now, cases))
}

fn status_of(case: &Case, now: chrono::DateTime<chrono::Utc>) -> u64 {
    let parts = RequestParts {
        method: &case.method,
        path_and_query: &case.path,
        headers: &case.headers,
    };
    match verify_request(&parts, &case.body, now, &case.key_pem) {
        Ok(_) => 202,
        Err(e) => {
            eprintln!("{}: {e}", case.name);
            401
        }
    }
}

#[test]
fn signature_algorithms_follow_the_key_type() -> anyhow::Result<()> {
    let (now, cases) = load("signature_algorithms.json")?;
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let status = status_of(case, now);
        assert!(
            case.expected.contains(&status),
            "{}: got {status}, expected one of {:?}",
            case.name,
            case.expected
        );
    }
    Ok(())
}

#[test]
fn signed_date_must_be_inside_the_window() -> anyhow::Result<()> {
    let (now, cases) = load("signature_dates.json")?;
    assert_eq!(cases.len(), 7);
    for case in &cases {
        let status = status_of(case, now);
        assert!(
            case.expected.contains(&status),
            "{}: got {status}, expected one of {:?}",
            case.name,
            case.expected
        );
    }
    Ok(())
}

#[test]
fn signatures_expire_after_a_day() -> anyhow::Result<()> {
    let (now, cases) = load("signature_dates.json")?;
    let later = now + chrono::Duration::days(1);
    for case in &cases {
        assert_eq!(status_of(case, later), 401, "{}", case.name);
    }
    Ok(())
}
