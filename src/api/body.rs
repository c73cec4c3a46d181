//! JSON request bodies whose errors name the field.
//!
//! actix-web's own `Json` reports a wrong type as the parser's text with a line and column.
//! [`Json`] reads the body as a JSON value first, with the size limit and content type checks
//! of the app's `JsonConfig`. It then decodes the value into the route's type while tracking
//! the path, so that an error names the field (`overrides[0].start`), the value found there
//! and what was expected.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use crate::calendar::validate::InvalidField;

/// A JSON body decoded into `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// Returns the decoded body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<Value>::from_request(request, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            decode(&value).map(Json).map_err(Into::into)
        })
    }
}

/// Decodes `value` into `T`; an error names the field, its value and what was expected.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().clone();
        let problem = error.into_inner().to_string();
        let parent = match path.to_string().as_str() {
            "." => None,
            other => Some(other.to_owned()),
        };
        // serde reports a missing field at the object that lacks it, so the field is named
        // from serde's message ("missing field `name`"), and it has no value.
        if let Some(missing) = missing_field(&problem) {
            let field = match parent {
                Some(parent) => format!("{parent}.{missing}"),
                None => missing.to_owned(),
            };
            return ApiError::Invalid(InvalidField::new(&field, "", problem));
        }
        let found = value
            .pointer(&pointer(&path))
            .map(|found| match found {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let field = parent.unwrap_or_else(|| "body".to_owned());
        ApiError::Invalid(InvalidField::new(&field, found, problem))
    })
}

/// Returns the field name in serde's "missing field `name`" message.
fn missing_field(problem: &str) -> Option<&str> {
    problem
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

/// Returns the JSON pointer (RFC 6901) of a deserializer path.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .fold(String::new(), |mut pointer, part| {
            pointer.push('/');
            pointer.push_str(&part);
            pointer
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "the fields are only decoded")]
    struct Input {
        capacity: Option<i32>,
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "the field is only decoded")]
    struct Item {
        start: String,
    }

    fn problem(value: &Value) -> InvalidField {
        match decode::<Input>(value) {
            Err(ApiError::Invalid(field)) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn decode_wrong_type_names_field_and_value() {
        let field = problem(&serde_json::json!({"capacity": "ten", "items": []}));
        assert_eq!(field.field, "capacity");
        assert_eq!(field.value, "ten");
        assert!(field.problem.contains("expected i32"), "{}", field.problem);
    }

    #[test]
    fn decode_nested_error_names_path() {
        let field = problem(&serde_json::json!({"items": [{"start": "x"}, {"start": 5}]}));
        assert_eq!(field.field, "items[1].start");
        assert_eq!(field.value, "5");
    }

    #[test]
    fn decode_missing_or_unknown_field_named() {
        let missing = problem(&serde_json::json!({"capacity": 3}));
        assert_eq!(missing.field, "items");
        assert_eq!(missing.value, "");
        assert!(missing.problem.contains("items"), "{}", missing.problem);
        let nested = problem(&serde_json::json!({"items": [{"start": "x"}, {}]}));
        assert_eq!(nested.field, "items[1].start");
        assert_eq!(nested.value, "");
        let unknown = problem(&serde_json::json!({"items": [], "colour": "red"}));
        assert!(unknown.problem.contains("colour"), "{}", unknown.problem);
    }
}
