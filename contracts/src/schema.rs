//! Pinning message shapes so that a breaking change fails a test.
//!
//! Each message's JSON Schema (from `schemars`) is reduced to a flat list of
//! fields: path, type and whether it is required. A checked-in snapshot per
//! message (`contracts/schemas/<type>.v<version>.json`) is compared with the
//! current shape by [`breaking_changes`]: removing, renaming or retyping a
//! field, or adding a required one, is breaking; adding an optional field
//! is not. `tests/contract_snapshots.rs` runs the comparison for every type
//! in [`registry`]; new messages join by being added there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Message, catalog, error::RpcError, feedback, notifications, orders, payments, users};

/// One field of a message, as pinned in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// JSON type name(s): `string`, `integer`, `object`, `array`, or an
    /// enumeration written `enum(a|b)`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether a reader must find the field present.
    pub required: bool,
    /// Whether `null` is accepted.
    pub nullable: bool,
}

/// The shape of a message: its identity and its fields keyed by path
/// (`product.price.amount_minor`, `items[].sku`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// [`Message::TYPE`].
    #[serde(rename = "type")]
    pub type_name: String,
    /// [`Message::VERSION`].
    pub version: u32,
    /// Fields by path.
    pub fields: BTreeMap<String, Field>,
}

impl Shape {
    /// The current shape of message type `M`.
    pub fn of<M: Message>() -> Self {
        let schema = schemars::schema_for!(M);
        Self::from_json_schema(M::TYPE, M::VERSION, &schema.to_value())
    }

    /// Snapshot file name for this shape.
    pub fn file_name(&self) -> String {
        format!("{}.v{}.json", self.type_name, self.version)
    }

    /// Flatten a JSON Schema document into fields.
    pub fn from_json_schema(type_name: &str, version: u32, schema: &Value) -> Self {
        let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
        let mut fields = BTreeMap::new();
        walk_object(schema, &defs, "", &mut fields, 0);
        Self {
            type_name: type_name.into(),
            version,
            fields,
        }
    }
}

/// Follow a `$ref` into `$defs`.
fn resolve<'a>(schema: &'a Value, defs: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// A schema's type, whether it admits null, and the schema to descend into.
fn classify<'a>(schema: &'a Value, defs: &'a Value) -> (String, bool, &'a Value) {
    let schema = resolve(schema, defs);
    // Option<T> of a struct appears as anyOf [T, null].
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            let non_null: Vec<&Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            let nullable = non_null.len() < alts.len();
            if non_null.len() == 1 {
                let (ty, inner_nullable, inner) = classify(non_null[0], defs);
                return (ty, nullable || inner_nullable, inner);
            }
            let mut variants: Vec<String> = non_null
                .iter()
                .map(|a| {
                    let a = resolve(a, defs);
                    a.get("const")
                        .or_else(|| a.get("enum").and_then(|e| e.get(0)))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| classify(a, defs).0)
                })
                .collect();
            variants.sort();
            return (format!("enum({})", variants.join("|")), nullable, schema);
        }
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        let mut v: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let nullable = values.iter().any(Value::is_null);
        v.sort();
        return (format!("enum({})", v.join("|")), nullable, schema);
    }
    let (mut ty, mut nullable) = match schema.get("type") {
        Some(Value::String(t)) => (t.clone(), false),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            (non_null.join("|"), non_null.len() < names.len())
        }
        _ => ("any".to_owned(), false),
    };
    // `format` distinguishes a uuid or a date-time from any string.
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        ty = format!("{ty}:{format}");
    }
    if ty.is_empty() {
        ty = "null".into();
        nullable = true;
    }
    (ty, nullable, schema)
}

fn walk_object(
    schema: &Value,
    defs: &Value,
    prefix: &str,
    out: &mut BTreeMap<String, Field>,
    depth: usize,
) {
    // Recursive types would loop; no message nests this deep.
    if depth > 16 {
        return;
    }
    let schema = resolve(schema, defs);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(props)) = schema.get("properties") else {
        return;
    };
    for (name, prop) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        walk_field(
            prop,
            defs,
            &path,
            required.contains(&name.as_str()),
            out,
            depth,
        );
    }
}

fn walk_field(
    prop: &Value,
    defs: &Value,
    path: &str,
    required: bool,
    out: &mut BTreeMap<String, Field>,
    depth: usize,
) {
    let (ty, nullable, inner) = classify(prop, defs);
    out.insert(
        path.to_owned(),
        Field {
            ty: ty.clone(),
            required,
            nullable,
        },
    );
    if ty.starts_with("object") {
        walk_object(inner, defs, path, out, depth + 1);
    } else if ty.starts_with("array")
        && let Some(items) = inner.get("items")
    {
        walk_field(items, defs, &format!("{path}[]"), true, out, depth + 1);
    }
}

/// Every change from `old` to `new` that would break a reader or a writer
/// of the old shape. Empty means compatible.
pub fn breaking_changes(old: &Shape, new: &Shape) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, before) in &old.fields {
        match new.fields.get(path) {
            None => problems.push(format!("field `{path}` was removed or renamed")),
            Some(after) => {
                if !type_compatible(&before.ty, &after.ty) {
                    problems.push(format!(
                        "field `{path}` changed type from {} to {}",
                        before.ty, after.ty
                    ));
                }
                if after.required && !before.required {
                    problems.push(format!("field `{path}` became required"));
                }
                if before.nullable && !after.nullable {
                    problems.push(format!("field `{path}` no longer accepts null"));
                }
            }
        }
    }
    for (path, after) in &new.fields {
        if old.fields.contains_key(path) || !after.required {
            continue;
        }
        // A required field inside a newly added optional object is fine: old
        // writers never send the object at all.
        let parent_is_old = match path.rfind(['.', '[']) {
            None => true,
            Some(i) => old.fields.contains_key(path[..i].trim_end_matches('[')),
        };
        if parent_is_old {
            problems.push(format!("required field `{path}` was added"));
        }
    }
    problems
}

/// Same type, or an enumeration that only gained values.
fn type_compatible(before: &str, after: &str) -> bool {
    if before == after {
        return true;
    }
    let parse = |t: &str| {
        t.strip_prefix("enum(")
            .and_then(|r| r.strip_suffix(')'))
            .map(|r| r.split('|').map(str::to_owned).collect::<Vec<_>>())
    };
    match (parse(before), parse(after)) {
        (Some(b), Some(a)) => b.iter().all(|v| a.contains(v)),
        _ => false,
    }
}

/// Every message type on the wire. Add each new message here.
pub fn registry() -> Vec<Shape> {
    vec![
        Shape::of::<RpcError>(),
        Shape::of::<catalog::Product>(),
        Shape::of::<catalog::CreateProduct>(),
        Shape::of::<catalog::UpdateProduct>(),
        Shape::of::<catalog::AdjustStock>(),
        Shape::of::<catalog::ProductCreated>(),
        Shape::of::<catalog::ProductChanged>(),
        Shape::of::<catalog::StockAdjusted>(),
        Shape::of::<catalog::ReserveStock>(),
        Shape::of::<catalog::ReleaseStock>(),
        Shape::of::<catalog::CommitReservation>(),
        Shape::of::<catalog::StockReserved>(),
        Shape::of::<catalog::StockRejected>(),
        Shape::of::<catalog::StockReleased>(),
        Shape::of::<catalog::ReservationCommitted>(),
        Shape::of::<catalog::GetProduct>(),
        Shape::of::<catalog::ListProducts>(),
        Shape::of::<catalog::ProductPage>(),
        Shape::of::<users::User>(),
        Shape::of::<users::RegisterUser>(),
        Shape::of::<users::GetUser>(),
        Shape::of::<users::UpdateProfile>(),
        Shape::of::<users::VerifyCredentials>(),
        Shape::of::<users::UserRegistered>(),
        Shape::of::<users::ProfileChanged>(),
        Shape::of::<users::OAuthClient>(),
        Shape::of::<users::GetClient>(),
        Shape::of::<users::AuthenticateClient>(),
        Shape::of::<users::StoreCode>(),
        Shape::of::<users::RedeemCode>(),
        Shape::of::<users::CodeGrant>(),
        Shape::of::<users::IssueRefresh>(),
        Shape::of::<users::RotateRefresh>(),
        Shape::of::<users::RefreshGrant>(),
        Shape::of::<users::RevokeRefresh>(),
        Shape::of::<users::Ack>(),
        Shape::of::<orders::PlaceOrder>(),
        Shape::of::<orders::CancelOrder>(),
        Shape::of::<orders::OrderPlaced>(),
        Shape::of::<orders::OrderStockReserved>(),
        Shape::of::<orders::OrderPaymentAuthorized>(),
        Shape::of::<orders::OrderPaymentCaptured>(),
        Shape::of::<orders::OrderConfirmed>(),
        Shape::of::<orders::OrderCancellationRequested>(),
        Shape::of::<orders::OrderCancelled>(),
        Shape::of::<orders::OrderView>(),
        Shape::of::<orders::GetOrder>(),
        Shape::of::<orders::ListOrders>(),
        Shape::of::<orders::OrderPage>(),
        Shape::of::<orders::GetOrderHistory>(),
        Shape::of::<orders::OrderHistory>(),
        Shape::of::<orders::SagaView>(),
        Shape::of::<orders::ListSagas>(),
        Shape::of::<orders::SagaList>(),
        Shape::of::<orders::RetrySaga>(),
        Shape::of::<payments::AuthorizePayment>(),
        Shape::of::<payments::CapturePayment>(),
        Shape::of::<payments::VoidPayment>(),
        Shape::of::<payments::RefundPayment>(),
        Shape::of::<payments::PaymentAuthorized>(),
        Shape::of::<payments::PaymentDeclined>(),
        Shape::of::<payments::PaymentCaptured>(),
        Shape::of::<payments::PaymentVoided>(),
        Shape::of::<payments::PaymentRefunded>(),
        Shape::of::<notifications::DeliverWebhook>(),
        Shape::of::<notifications::NotificationSent>(),
        Shape::of::<notifications::NotificationFailed>(),
        Shape::of::<notifications::Webhook>(),
        Shape::of::<notifications::SetWebhook>(),
        Shape::of::<notifications::GetWebhook>(),
        Shape::of::<notifications::DeleteWebhook>(),
        Shape::of::<notifications::WebhookDeleted>(),
        Shape::of::<feedback::PollView>(),
        Shape::of::<feedback::CreatePoll>(),
        Shape::of::<feedback::EditPoll>(),
        Shape::of::<feedback::PublishPoll>(),
        Shape::of::<feedback::ClosePoll>(),
        Shape::of::<feedback::GetPoll>(),
        Shape::of::<feedback::ListPolls>(),
        Shape::of::<feedback::PollList>(),
        Shape::of::<feedback::GetInvitation>(),
        Shape::of::<feedback::InvitationView>(),
        Shape::of::<feedback::SubmitByToken>(),
        Shape::of::<feedback::SubmitByCustomer>(),
        Shape::of::<feedback::ResponseReceipt>(),
        Shape::of::<feedback::ResponseRecorded>(),
        Shape::of::<feedback::GetResults>(),
        Shape::of::<feedback::PollResults>(),
        Shape::of::<feedback::ExportResponses>(),
        Shape::of::<feedback::ResponsesCsv>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Inner {
        x: i64,
    }
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Base {
        id: uuid::Uuid,
        name: String,
        inner: Inner,
        #[serde(default)]
        note: Option<String>,
    }

    fn shape<T: JsonSchema>() -> Shape {
        Shape::from_json_schema("t", 1, &schemars::schema_for!(T).to_value())
    }

    #[test]
    fn flattening_sees_nested_fields_and_formats() {
        let s = shape::<Base>();
        assert_eq!(s.fields["id"].ty, "string:uuid");
        assert!(s.fields["name"].required);
        assert_eq!(s.fields["inner.x"].ty, "integer:int64");
        assert!(!s.fields["note"].required);
        assert!(s.fields["note"].nullable);
    }

    #[test]
    fn adding_an_optional_field_is_compatible() {
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct V2 {
            id: uuid::Uuid,
            name: String,
            inner: Inner,
            #[serde(default)]
            note: Option<String>,
            #[serde(default)]
            extra: Option<u32>,
        }
        assert!(breaking_changes(&shape::<Base>(), &shape::<V2>()).is_empty());
    }

    #[test]
    fn removing_renaming_retyping_or_requiring_is_breaking() {
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct Renamed {
            id: uuid::Uuid,
            title: String,
            inner: Inner,
            #[serde(default)]
            note: Option<String>,
        }
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct Retyped {
            id: String,
            name: String,
            inner: Inner,
            #[serde(default)]
            note: Option<String>,
        }
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct AddedRequired {
            id: uuid::Uuid,
            name: String,
            inner: Inner,
            #[serde(default)]
            note: Option<String>,
            must: u32,
        }
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct NestedRetyped {
            id: uuid::Uuid,
            name: String,
            inner: Base2,
            #[serde(default)]
            note: Option<String>,
        }
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct Base2 {
            x: String,
        }
        let base = shape::<Base>();
        let renamed = breaking_changes(&base, &shape::<Renamed>());
        assert!(
            renamed.iter().any(|p| p.contains("`name` was removed")),
            "{renamed:?}"
        );
        assert!(
            renamed.iter().any(|p| p.contains("`title` was added")),
            "{renamed:?}"
        );
        assert!(!breaking_changes(&base, &shape::<Retyped>()).is_empty());
        assert!(!breaking_changes(&base, &shape::<AddedRequired>()).is_empty());
        let nested = breaking_changes(&base, &shape::<NestedRetyped>());
        assert!(nested.iter().any(|p| p.contains("inner.x")), "{nested:?}");
    }

    #[test]
    fn enums_may_gain_but_not_lose_values() {
        assert!(type_compatible("enum(a|b)", "enum(a|b|c)"));
        assert!(!type_compatible("enum(a|b)", "enum(a)"));
    }

    #[test]
    fn registry_names_are_unique() {
        let reg = registry();
        let mut names: Vec<_> = reg.iter().map(Shape::file_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), reg.len());
    }
}
