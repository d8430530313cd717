//! The published OpenAPI document may be stricter than a service, never
//! looser. A value the document's pattern lets through but the owning
//! service refuses is a 400 the document does not explain: a client
//! generated from it, or a fuzzer (`make fuzz`), meets it. The gateway
//! cannot import the services, so this test, whose crate runs them all,
//! puts each published pattern next to the service rule it stands for and
//! feeds both many generated values: whatever the pattern (and the
//! schema's lengths) accept, the service must accept too.
//!
//! The password's "not one character repeated" is written in ECMA-262 with
//! a back-reference the `regex` crate cannot run; the gateway's spec tests
//! cover it.

use jetshop_catalog::domain::Sku;
use jetshop_users::domain::{DisplayName, Email};
use regex::Regex;
use serde_json::Value;

/// A small deterministic generator: the same candidates on every run.
struct Candidates(u64);

impl Candidates {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `parts` pieces chosen from `pieces`, concatenated.
    fn text(&mut self, pieces: &[&str], max_parts: usize) -> String {
        let n = self.below(max_parts + 1);
        (0..n).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}

/// Characters that trip rules: spaces of several kinds, controls, case
/// changes that change lengths, separators.
const AWKWARD: &[&str] = &[
    " ", "\t", "\n", "\r", "\u{0}", "\u{7f}", "\u{85}", "\u{a0}", "\u{2028}", "\u{200b}", "İ", "é",
    "ß", "@", ".", "..", "-", "_", ":", "/", "?", "#", "%", "[", "]", "'", "\"", "\\",
];

fn document() -> Value {
    serde_json::from_str(&jetshop_gateway::api::spec::json()).expect("the document is JSON")
}

/// The schema at `pointer`: its pattern compiled as poem-openapi does, and
/// its length bounds.
struct Published {
    pattern: Regex,
    min: usize,
    max: usize,
}

impl Published {
    fn at(doc: &Value, pointer: &str) -> Self {
        let schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no schema at {pointer}"));
        let pattern = schema["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("no pattern at {pointer}: {schema}"));
        let bound = |key: &str, default: usize| {
            schema[key]
                .as_u64()
                .map_or(default, |n| usize::try_from(n).unwrap())
        };
        Self {
            pattern: Regex::new(pattern).expect("poem-openapi compiled it too"),
            min: bound("minLength", 0),
            max: bound("maxLength", usize::MAX),
        }
    }

    fn admits(&self, value: &str) -> bool {
        let n = value.chars().count();
        (self.min..=self.max).contains(&n) && self.pattern.is_match(value)
    }
}

/// Feeds `count` candidates to the pattern and to the service's rule;
/// fails on the first the pattern admits and the service refuses, and
/// when too few were admitted for the check to mean anything.
fn never_looser(
    published: &Published,
    count: usize,
    mut candidate: impl FnMut(&mut Candidates) -> String,
    service_accepts: impl Fn(&str) -> Result<(), String>,
) {
    let mut candidates = Candidates(0x9e37_79b9_7f4a_7c15);
    let mut admitted = 0;
    for _ in 0..count {
        let value = candidate(&mut candidates);
        if published.admits(&value) {
            admitted += 1;
            if let Err(why) = service_accepts(&value) {
                panic!(
                    "{value:?} matches the published pattern {} but the service refuses it: {why}",
                    published.pattern
                );
            }
        }
    }
    assert!(
        admitted >= count / 100,
        "only {admitted} of {count} candidates matched {}",
        published.pattern
    );
}

fn schema_of_parameter(doc: &Value, path: &str, method: &str, name: &str) -> String {
    let params = doc["paths"][path][method]["parameters"]
        .as_array()
        .expect("parameters");
    let at = params
        .iter()
        .position(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name} on {method} {path}"));
    format!(
        "/paths/{}/{method}/parameters/{at}/schema",
        path.replace('/', "~1")
    )
}

#[test]
fn skus_the_document_admits_are_skus_the_catalog_takes() {
    let doc = document();
    let sku_chars = ["A", "z", "0", "9", ".", "-", "_"];
    let pieces: Vec<&str> = sku_chars.iter().chain(AWKWARD).copied().collect();
    for pointer in [
        "/components/schemas/NewProduct/properties/sku".to_owned(),
        schema_of_parameter(&doc, "/v1/products", "get", "sku"),
    ] {
        let published = Published::at(&doc, &pointer);
        never_looser(
            &published,
            20_000,
            |g| {
                if g.below(2) == 0 {
                    g.text(&sku_chars, 70)
                } else {
                    g.text(&pieces, 8)
                }
            },
            |v| Sku::parse(v).map(drop).map_err(|e| e.to_string()),
        );
    }
}

#[test]
fn emails_the_document_admits_are_emails_the_users_service_takes() {
    let doc = document();
    let published = Published::at(&doc, "/components/schemas/NewUser/properties/email");
    let plain = ["a", "Z", "0", "+", "é", "x.y"];
    let pieces: Vec<&str> = plain.iter().chain(AWKWARD).copied().collect();
    never_looser(
        &published,
        20_000,
        |g| {
            let local = if g.below(2) == 0 {
                g.text(&plain, 70)
            } else {
                g.text(&pieces, 4)
            };
            let labels = 1 + g.below(3);
            let domain: Vec<String> = (0..labels)
                .map(|_| {
                    if g.below(3) == 0 {
                        g.text(&pieces, 3)
                    } else {
                        g.text(&plain, 4)
                    }
                })
                .collect();
            format!("{local}@{}", domain.join("."))
        },
        |v| Email::parse(v).map(drop).map_err(|e| e.to_string()),
    );
}

#[test]
fn display_names_the_document_admits_are_names_the_users_service_takes() {
    let doc = document();
    let plain = ["Ada", " ", "é", "-", "'", "x"];
    let pieces: Vec<&str> = plain.iter().chain(AWKWARD).copied().collect();
    for pointer in [
        "/components/schemas/NewUser/properties/display_name",
        "/components/schemas/ProfileChanges/properties/display_name",
    ] {
        let published = Published::at(&doc, pointer);
        never_looser(
            &published,
            20_000,
            |g| g.text(&pieces, 6),
            |v| DisplayName::parse(v).map(drop).map_err(|e| e.to_string()),
        );
    }
}

#[test]
fn webhook_urls_the_document_admits_are_urls_notifications_takes() {
    let doc = document();
    let published = Published::at(&doc, "/components/schemas/NewWebhook/properties/url");
    let schemes = [
        "https://",
        "HTTPS://",
        "http://",
        "https:",
        "ftp://",
        "https:///",
    ];
    let hosts = [
        "example.com",
        "a",
        "a-b.c9",
        "xn--nxasmq6b",
        "1.2.3.4",
        "999999999999",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "user:pw@example.com",
        "",
        "-a.b",
        "a..b",
        "ex ample.com",
    ];
    let ports = [
        "", ":443", ":0", ":65535", ":65536", ":99999", ":", ":08080",
    ];
    let path_pieces = [
        "/", "hooks", "?", "a=b", "&", "%20", "%zz", "#frag", "@", "~", ";", "'", "é", " ",
    ];
    never_looser(
        &published,
        40_000,
        |g| {
            format!(
                "{}{}{}{}",
                schemes[g.below(schemes.len())],
                hosts[g.below(hosts.len())],
                ports[g.below(ports.len())],
                g.text(&path_pieces, 5)
            )
        },
        |v| {
            jetshop_notifications::webhook::validate_url(v, false)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn idempotency_keys_the_document_admits_are_keys_the_gateway_takes() {
    let doc = document();
    let published = Published::at(
        &doc,
        &schema_of_parameter(&doc, "/v1/orders", "post", "Idempotency-Key"),
    );
    let plain = ["a", "Z", "0", "-", "~", "!", "{", "order-42"];
    let pieces: Vec<&str> = plain.iter().chain(AWKWARD).copied().collect();
    never_looser(
        &published,
        20_000,
        |g| {
            if g.below(50) == 0 {
                "k".repeat(250 + g.below(10))
            } else {
                g.text(&pieces, 10)
            }
        },
        |v| {
            jetshop_gateway::http::idempotency::is_valid_key(v.as_bytes())
                .then_some(())
                .ok_or_else(|| "not 1 to 255 visible ASCII characters".to_owned())
        },
    );
}
