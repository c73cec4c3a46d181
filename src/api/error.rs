//! Errors at the HTTP edge, written as RFC 9457 problem details (`application/problem+json`).
//!
//! Clients get a safe text: which field, which value, which rule. Internal detail (database
//! errors, corrupt rows) is logged with the request and never sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::calendar;
use crate::calendar::validate::InvalidField;

/// An error that becomes a problem+json response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing, malformed or over a limit (422), or the body is not JSON (400).
    #[error(transparent)]
    Invalid(InvalidField),
    /// An uploaded file is malformed; the text names the line and what is wrong (422).
    #[error("{0}")]
    InvalidFile(String),
    /// The request body could not be read as the expected format.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing at this address.
    #[error("{0}")]
    NotFound(String),
    /// The change clashes with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// A write without a valid bearer token.
    #[error("this request needs a valid bearer token: create one with `rose-events token create`")]
    Unauthorized,
    /// The body is larger than the route accepts.
    #[error("request body is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Bytes received (or announced).
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// A field breaks a stated limit (422); the body also names the limit.
    #[error("{field} {problem}")]
    OverLimit {
        /// The field, header or query parameter.
        field: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        problem: String,
        /// The limit, as text.
        limit: String,
    },
    /// The client asked for a representation we do not have.
    #[error("{0}")]
    NotAcceptable(String),
    /// Something failed on our side; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid(field: &str, value: impl ToString, problem: impl Into<String>) -> Self {
        ApiError::Invalid(InvalidField::new(field, value, problem))
    }
}

impl From<calendar::Error> for ApiError {
    fn from(error: calendar::Error) -> Self {
        use calendar::Error as E;
        match error {
            E::CalendarNotFound(_) | E::EventNotFound(_) => ApiError::NotFound(error.to_string()),
            E::SlugTaken(_) | E::UidTaken(_) => ApiError::Conflict(error.to_string()),
            E::Invalid(field) => ApiError::Invalid(field),
            E::Ics(_) => ApiError::InvalidFile(error.to_string()),
            E::Corrupt(_) | E::Database(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<crate::federation::Error> for ApiError {
    fn from(error: crate::federation::Error) -> Self {
        use crate::federation::Error as E;
        match error {
            E::Invalid(field) => ApiError::Invalid(field),
            E::NotFound(text) => ApiError::NotFound(text),
            E::Calendar(inner) => ApiError::from(inner),
            E::Booking(inner) => ApiError::from(inner),
            E::Notify(inner) => ApiError::from(inner),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// A 422 for a value outside a stated limit.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "callers pass numbers and string slices alike"
    )]
    pub fn over_limit(
        field: &str,
        value: impl ToString,
        problem: impl Into<String>,
        limit: impl ToString,
    ) -> Self {
        let value = InvalidField::new(field, value, "").value;
        ApiError::OverLimit {
            field: field.to_owned(),
            value,
            problem: problem.into(),
            limit: limit.to_string(),
        }
    }
}

impl From<crate::booking::Error> for ApiError {
    fn from(error: crate::booking::Error) -> Self {
        use crate::booking::Error as E;
        match error {
            E::EventNotFound(_) | E::OccurrenceNotFound { .. } | E::BookingNotFound(_) => {
                ApiError::NotFound(error.to_string())
            }
            E::NotAHold { .. } | E::KeyInFlight(_) | E::BookedOccurrenceRemoved { .. } => {
                ApiError::Conflict(error.to_string())
            }
            E::KeyReused(ref key) => ApiError::over_limit(
                "Idempotency-Key",
                key,
                "was already used with a different request",
                "one request per key",
            ),
            E::CapacityBelowTaken { requested, taken } => ApiError::over_limit(
                "capacity",
                requested,
                "is below the seats already taken",
                format!("at least {taken}"),
            ),
            E::Facts(crate::availability::facts::Error::TooManyFacts { count, limit }) => {
                ApiError::over_limit(
                    "window",
                    format!("{count} facts"),
                    "needs more availability facts than one query may use",
                    limit,
                )
            }
            E::Calendar(inner) => inner.into(),
            E::Facts(_)
            | E::Notify(_)
            | E::Queue(_)
            | E::Corrupt(_)
            | E::RemoteAnswer(_)
            | E::Database(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<crate::notify::Error> for ApiError {
    fn from(error: crate::notify::Error) -> Self {
        use crate::notify::Error as E;
        match error {
            E::Invalid(field) => ApiError::Invalid(field),
            E::EventNotFound(_)
            | E::OccurrenceNotFound { .. }
            | E::CalendarNotFound(_)
            | E::PersonNotFound(_) => ApiError::NotFound(error.to_string()),
            E::Calendar(error) => error.into(),
            E::Corrupt(_) | E::Queue(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<crate::db::Error> for ApiError {
    fn from(error: crate::db::Error) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::InvalidFile(_) | ApiError::OverLimit { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let ApiError::Invalid(field) = self {
            body["field"] = json!(field.field);
            body["value"] = json!(field.value);
            body["problem"] = json!(field.problem);
        }
        if let ApiError::OverLimit {
            field,
            value,
            problem,
            limit,
        } = self
        {
            body["field"] = json!(field);
            body["value"] = json!(value);
            body["problem"] = json!(problem);
            body["limit"] = json!(limit);
        }
        if let ApiError::TooLarge { size, limit } = self {
            body["field"] = json!("body");
            body["value"] = json!(format!("{size} bytes"));
            body["limit"] = json!(limit);
        }
        let mut response = HttpResponse::build(status);
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response
            .content_type("application/problem+json")
            .body(body.to_string())
    }
}
