//! The words of reminders and digests, as a Web Push payload and as an email.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::Digest;

use crate::delivery::transport::EmailMessage;
use crate::delivery::transport::web_push::MAX_PAYLOAD_BYTES;

/// A notification before it is put on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// One line: the subject or the notification title.
    pub title: String,
    /// Lines of the body.
    pub lines: Vec<String>,
    /// Page to open.
    pub url: String,
}

/// Formats a start time as the person reads it: `Mon 21 Oct 2024 18:30 (Europe/Paris)`.
pub fn local_time(instant: DateTime<Utc>, zone: Tz) -> String {
    format!(
        "{} ({})",
        instant.with_timezone(&zone).format("%a %-d %b %Y %H:%M"),
        zone.name()
    )
}

/// Builds the Web Push payload: JSON with `title`, `body`, `url` and `tag`, which the page's
/// service worker shows. Lines are dropped from the end until it fits [`MAX_PAYLOAD_BYTES`].
pub fn push_payload(notice: &Notice, tag: &str) -> String {
    let mut lines = notice.lines.clone();
    loop {
        let payload = serde_json::json!({
            "title": notice.title,
            "body": lines.join("\n"),
            "url": notice.url,
            "tag": tag,
        })
        .to_string();
        if payload.len() <= MAX_PAYLOAD_BYTES || lines.is_empty() {
            return payload;
        }
        lines.pop();
    }
}

/// Builds the email: plain text and HTML with the same lines, a Message-ID derived from the
/// job's dedup key (so every resend carries the same one) and an unsubscribe link.
pub fn email(
    notice: &Notice,
    to: &str,
    dedup_key: &str,
    public_url: &str,
    unsubscribe_url: Option<String>,
    date: DateTime<Utc>,
) -> EmailMessage {
    let mut text = notice.lines.join("\n");
    let _ = write!(text, "\n\n{}\n", notice.url);
    if let Some(link) = &unsubscribe_url {
        let _ = write!(text, "\nStop these emails: {link}\n");
    }
    let mut html = format!(
        "<!DOCTYPE html>\n<html><body>\n<h1>{}</h1>\n",
        escape_html(&notice.title)
    );
    for line in &notice.lines {
        let _ = writeln!(html, "<p>{}</p>", escape_html(line));
    }
    let _ = writeln!(
        html,
        "<p><a href=\"{}\">Open</a></p>",
        escape_html(&notice.url)
    );
    if let Some(link) = &unsubscribe_url {
        let _ = writeln!(
            html,
            "<p><a href=\"{}\">Stop these emails</a></p>",
            escape_html(link)
        );
    }
    html.push_str("</body></html>\n");
    EmailMessage {
        to: to.to_owned(),
        subject: notice.title.clone(),
        text,
        html,
        message_id: message_id(dedup_key, public_url),
        list_unsubscribe: unsubscribe_url,
        date: Some(date),
    }
}

/// Returns the element id of an occurrence on the calendar page, which reminders link to.
pub fn anchor(event_id: i64, recurrence_id: Option<DateTime<Utc>>) -> String {
    match recurrence_id {
        Some(rid) => format!("occurrence-{event_id}-{}", rid.timestamp()),
        None => format!("occurrence-{event_id}"),
    }
}

/// Derives a Message-ID, `<hash>@<public host>`, that is stable for one dedup key.
pub fn message_id(dedup_key: &str, public_url: &str) -> String {
    let digest = sha2::Sha256::digest(dedup_key.as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        let _ = write!(hex, "{byte:02x}");
    }
    let host = reqwest::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "rose-events.invalid".to_owned());
    format!("{hex}@{host}")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_payload_is_cut_to_the_limit() {
        let notice = Notice {
            title: "Digest".into(),
            lines: (0..400)
                .map(|i| format!("line {i} with some words"))
                .collect(),
            url: "https://events.example/calendars/x".into(),
        };
        let payload = push_payload(&notice, "t");
        assert!(payload.len() <= MAX_PAYLOAD_BYTES, "{}", payload.len());
        assert!(payload.contains("line 0 "));
    }

    #[test]
    fn message_id_is_stable_per_key() {
        let a = message_id("email/reminder/1", "https://events.example");
        assert_eq!(a, message_id("email/reminder/1", "https://events.example"));
        assert!(a.ends_with("@events.example"));
        assert_ne!(a, message_id("email/reminder/2", "https://events.example"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn local_time_names_the_zone() {
        let at: DateTime<Utc> = "2024-10-21T16:30:00Z".parse().unwrap();
        assert_eq!(
            local_time(at, chrono_tz::Europe::Paris),
            "Mon 21 Oct 2024 18:30 (Europe/Paris)"
        );
    }
}
