//! Transports: the code that talks to the outside world. Each one sends a single message and
//! classifies the remote side's answer as delivered, retry (with any delay the remote side
//! asked for) or a permanent failure; the job handlers in `notify` turn that into an
//! [`Outcome`](super::Outcome).

pub mod email;
pub mod web_push;

pub use email::{EmailMessage, EmailTransport, SmtpSecurity, SmtpSettings};
pub use web_push::{PushMessage, PushResult, PushUrgency, VapidKey, WebPushTransport};
