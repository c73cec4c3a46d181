//! Email over SMTP with lettre: one connection per message, plain text plus HTML.
//!
//! Replies are classified by their code (RFC 5321): 4yz is transient and retried, 5yz is
//! permanent. A connection lost after the final dot leaves the outcome unknown. The retry is
//! allowed because the message keeps its Message-ID, which lets receivers drop the copy.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, MultiPartKind, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Maximum wait for each SMTP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Maximum time for a whole send, connection to QUIT: shorter than the worker's default
/// 60-second lease, so no other worker takes the job while this one still sends it.
const SEND_TIMEOUT: Duration = Duration::from_secs(45);

/// Protection of the SMTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain TCP: only for a relay on the same host.
    None,
    /// Plain TCP upgraded with STARTTLS, which must succeed (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Relay address and sender identity.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// Relay host name.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Connection protection.
    pub security: SmtpSecurity,
    /// Login name, if the relay needs one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Sender address, optionally with a display name: `Rose Events <events@example.org>`.
    pub from: String,
}

/// One email.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmailMessage {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// Message-ID without angle brackets; the same on every resend.
    pub message_id: String,
    /// `List-Unsubscribe` target, a URL.
    pub list_unsubscribe: Option<String>,
    /// The `Date` header; the send time when left out. Set it so that a resend is the same
    /// message byte for byte.
    #[serde(default)]
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

/// Outcome of one send, classified by the relay's reply code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailResult {
    /// The relay accepted the message.
    Sent,
    /// A 4xx reply, a timeout or a lost connection.
    Retry(String),
    /// The relay rejected our login (5.7.x at AUTH): an operator must fix the settings, and the
    /// message itself is fine.
    SenderRejected(String),
    /// A 5xx reply about this message or recipient, or a message that cannot be built.
    Failed(String),
}

/// Errors building the transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sender address does not parse.
    #[error("sender address {0:?} is invalid: use name@example.org or Name <name@example.org>")]
    From(String),
    /// TLS settings cannot be built.
    #[error("cannot set up TLS for SMTP host {host}: {reason}")]
    Tls {
        /// The relay host.
        host: String,
        /// What failed.
        reason: String,
    },
}

/// Sends email through one SMTP relay.
pub struct EmailTransport {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl EmailTransport {
    /// Builds the transport; nothing connects until the first message.
    pub fn new(settings: &SmtpSettings) -> Result<Self, Error> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|_| Error::From(settings.from.clone()))?;
        let tls = match settings.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(tls_parameters(&settings.host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(&settings.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(EmailTransport {
            mailer: builder.build(),
            from,
            host: settings.host.clone(),
        })
    }

    /// Sends one message and classifies the relay's reply.
    pub async fn send(&self, message: &EmailMessage) -> EmailResult {
        let email = match self.build(message) {
            Ok(email) => email,
            Err(error) => return EmailResult::Failed(error),
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.mailer.send(email)).await {
            Ok(Ok(_)) => EmailResult::Sent,
            Ok(Err(error)) => classify(&error, &self.host),
            Err(_) => EmailResult::Retry(format!(
                "SMTP relay {} timed out after {} s",
                self.host,
                SEND_TIMEOUT.as_secs()
            )),
        }
    }

    fn build(&self, message: &EmailMessage) -> Result<Message, String> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|e| format!("recipient address {:?} is invalid: {e}", message.to))?;
        // A boundary derived from the Message-ID keeps a resend identical to the first send.
        let boundary = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(message.message_id.as_bytes());
            let mut hex = String::with_capacity(24);
            for byte in &digest[..12] {
                let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{byte:02x}"));
            }
            format!("rose-events-{hex}")
        };
        let body = MultiPart::builder()
            .kind(MultiPartKind::Alternative)
            .boundary(boundary)
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(message.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(message.html.clone()),
            );
        let mut builder = Message::builder();
        if let Some(date) = message.date {
            builder = builder.date(date.into());
        }
        let mut email = builder
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .message_id(Some(format!("<{}>", message.message_id)))
            .multipart(body)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        if let Some(target) = &message.list_unsubscribe {
            // RFC 8058 one-click unsubscribe needs both headers.
            let headers = email.headers_mut();
            headers.insert_raw(raw_header("List-Unsubscribe", format!("<{target}>")));
            headers.insert_raw(raw_header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
        Ok(email)
    }
}

fn raw_header(name: &'static str, value: String) -> lettre::message::header::HeaderValue {
    lettre::message::header::HeaderValue::new(
        lettre::message::header::HeaderName::new_from_ascii_str(name),
        value,
    )
}

fn tls_parameters(host: &str) -> Result<TlsParameters, Error> {
    TlsParameters::new(host.to_owned()).map_err(|e| Error::Tls {
        host: host.to_owned(),
        reason: e.to_string(),
    })
}

/// Classifies a lettre error by its reply code; errors without a code (timeouts, lost
/// connections, TLS failures) are transient.
fn classify(error: &lettre::transport::smtp::Error, host: &str) -> EmailResult {
    let code = error.status().map(|code| code.to_string());
    let text = format!("SMTP relay {host}: {error}");
    match code.as_deref() {
        // 530, 534, 535 and 538 are replies to AUTH: our credentials are wrong, not the recipient.
        Some("530" | "534" | "535" | "538") => EmailResult::SenderRejected(text),
        Some(code) if code.starts_with('5') => EmailResult::Failed(text),
        _ if error.is_permanent() => EmailResult::Failed(text),
        _ => EmailResult::Retry(text),
    }
}
