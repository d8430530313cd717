//! A JSON request body held to the types its published schema gives.
//!
//! poem-openapi's `Json<T>` parses a `String` field from a JSON number or
//! boolean too (`{"display_name": false}` becomes the name `"false"`), and
//! takes `null` for an optional field that the document says is a string.
//! A client reading our OpenAPI document, or a fuzzer, rightly expects both
//! refused. [`StrictJson`] checks the parsed value against the schema
//! `T` registers (the same one `/openapi.json` publishes) before `T` parses
//! it, so the document and the parser cannot disagree. It checks JSON types
//! only: lengths, patterns and ranges stay with poem-openapi's validators.

use std::ops::Deref;

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ParseRequestPayloadError,
    impl_apirequest_for_payload,
    payload::{Json, ParsePayload, Payload},
    registry::{MetaRequest, MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::Value;

use crate::error::Error;

/// A JSON body whose every value has the type the schema says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictJson<T>(pub T);

impl<T> Deref for StrictJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for StrictJson<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for StrictJson<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|err| ParseRequestPayloadError {
                reason: err.to_string(),
            })?
        };
        // An absent optional body is not a type error; `T` decides.
        if !value.is_null() {
            check::<T>(&value)?;
        }
        let parsed = T::parse_from_json(Some(value)).map_err(|err| ParseRequestPayloadError {
            reason: err.into_message(),
        })?;
        Ok(Self(parsed))
    }
}

impl_apirequest_for_payload!(StrictJson<T>, T: ParseFromJSON);

/// An optional JSON body: none at all (no `Content-Type`, nothing sent)
/// is `None`, anything else must be the JSON object, held to its schema
/// like [`StrictJson`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for OptionalJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <StrictJson<T> as ApiExtractor>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        <StrictJson<T> as ApiExtractor>::request_meta().map(|meta| MetaRequest {
            required: false,
            ..meta
        })
    }

    async fn from_request(
        request: &'a poem::Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if request.content_type().is_none() {
            let bytes = body.take()?.into_bytes().await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(None));
            }
            return Err(poem_openapi::error::ContentTypeError::ExpectContentType.into());
        }
        let parsed =
            <StrictJson<Option<T>> as ApiExtractor>::from_request(request, body, param_opts)
                .await?;
        Ok(Self(parsed.0))
    }
}

/// Checks `value` against the schema `T` publishes.
pub fn check<T: Type>(value: &Value) -> Result<(), Error> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    Checker {
        registry: &registry,
    }
    .conforms(value, &T::schema_ref(), &mut String::new())
}

struct Checker<'r> {
    registry: &'r Registry,
}

impl Checker<'_> {
    /// `at` is the JSON path so far (`lines[0].quantity`), for the problem.
    fn conforms(
        &self,
        value: &Value,
        schema: &MetaSchemaRef,
        at: &mut String,
    ) -> Result<(), Error> {
        let schema = match schema {
            MetaSchemaRef::Inline(schema) => schema,
            MetaSchemaRef::Reference(name) => match self.registry.schemas.get(name) {
                Some(schema) => schema,
                // A schema we cannot resolve cannot be held against the body.
                None => return Ok(()),
            },
        };
        self.conforms_to(value, schema, at)
    }

    fn conforms_to(
        &self,
        value: &Value,
        schema: &MetaSchema,
        at: &mut String,
    ) -> Result<(), Error> {
        for part in &schema.all_of {
            self.conforms(value, part, at)?;
        }
        let alternatives = if schema.one_of.is_empty() {
            &schema.any_of
        } else {
            &schema.one_of
        };
        if !alternatives.is_empty()
            && !alternatives
                .iter()
                .any(|alt| self.conforms(value, alt, &mut at.clone()).is_ok())
        {
            return Err(mismatch(at, "one of the documented shapes", value));
        }
        if value.is_null() {
            return if schema.nullable || schema.ty.is_empty() || !alternatives.is_empty() {
                Ok(())
            } else {
                Err(mismatch(at, expected(schema.ty), value))
            };
        }
        let fits = match schema.ty {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            // No type (any value), or one this check does not know.
            _ => true,
        };
        if !fits {
            return Err(mismatch(at, expected(schema.ty), value));
        }
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    let property = schema.properties.iter().find(|(n, _)| n == name);
                    let field_schema = match property {
                        Some((_, s)) => Some(s),
                        None => schema.additional_properties.as_deref(),
                    };
                    if let Some(field_schema) = field_schema {
                        let len = at.len();
                        if !at.is_empty() {
                            at.push('.');
                        }
                        at.push_str(name);
                        self.conforms(field, field_schema, at)?;
                        at.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.items.as_deref() {
                    for (i, item) in items.iter().enumerate() {
                        let len = at.len();
                        at.push_str(&format!("[{i}]"));
                        self.conforms(item, item_schema, at)?;
                        at.truncate(len);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn expected(ty: &str) -> &'static str {
    match ty {
        "string" => "a string",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "number" => "a number",
        "array" => "an array",
        "object" => "an object",
        _ => "a documented value",
    }
}

fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn mismatch(at: &str, expected: &'static str, value: &Value) -> Error {
    Error::BodyShape {
        at: if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        },
        expected,
        found: found(value),
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    struct Line {
        sku: String,
        quantity: u32,
    }

    #[derive(Debug, Object)]
    struct Body {
        name: Option<String>,
        gift: Option<bool>,
        lines: Vec<Line>,
    }

    fn refusal(value: Value) -> (String, &'static str, &'static str) {
        match check::<Body>(&value) {
            Err(Error::BodyShape {
                at,
                expected,
                found,
            }) => (at, expected, found),
            other => panic!("expected a shape error for {value}, got {other:?}"),
        }
    }

    #[test]
    fn a_body_of_the_documented_types_passes() {
        check::<Body>(
            &json!({"name": "Ada", "gift": true, "lines": [{"sku": "A-1", "quantity": 2}]}),
        )
        .unwrap();
        check::<Body>(&json!({"lines": []})).unwrap();
    }

    #[test]
    fn a_boolean_or_number_where_a_string_is_documented_is_refused() {
        assert_eq!(
            refusal(json!({"name": false, "lines": []})),
            ("name".to_owned(), "a string", "a boolean")
        );
        assert_eq!(
            refusal(json!({"lines": [{"sku": 7, "quantity": 1}]})),
            ("lines[0].sku".to_owned(), "a string", "a number")
        );
    }

    #[test]
    fn null_for_an_optional_field_is_refused_as_the_document_says() {
        assert_eq!(
            refusal(json!({"name": null, "lines": []})),
            ("name".to_owned(), "a string", "null")
        );
    }

    #[test]
    fn fractions_where_integers_are_documented_are_refused() {
        assert_eq!(
            refusal(json!({"lines": [{"sku": "A", "quantity": 1.5}]})),
            (
                "lines[0].quantity".to_owned(),
                "an integer",
                "a number with a fraction"
            )
        );
    }

    #[test]
    fn the_wrong_container_is_refused() {
        assert_eq!(
            refusal(json!({"lines": {"sku": "A"}})),
            ("lines".to_owned(), "an array", "an object")
        );
        assert_eq!(
            refusal(json!([1])),
            ("body".to_owned(), "an object", "an array")
        );
    }
}
