//! What the emails say: one template per kind (order confirmed, order
//! cancelled, welcome), each as plain text with an HTML alternative, and
//! the message around them.
//!
//! Every message carries a `Message-ID` derived from its delivery id, so
//! a message sent twice (see [`crate::delivery`] for when that can happen)
//! is the same message to the recipient's client, which shows it once.

use chrono::{DateTime, Utc};
use jetshop_contracts::{
    catalog::Money,
    orders::{OrderCancelled, OrderConfirmed, OrderLine},
    users::User,
};
use jetshop_platform::html::escape;
use lettre::message::{Mailbox, MultiPart};
use uuid::Uuid;

use crate::Error;

/// The `kind` of an order-confirmed email.
pub const KIND_ORDER_CONFIRMED: &str = "order-confirmed";
/// The `kind` of an order-cancelled email.
pub const KIND_ORDER_CANCELLED: &str = "order-cancelled";
/// The `kind` of a welcome email.
pub const KIND_WELCOME: &str = "welcome";

/// A rendered email, before addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative.
    pub html: String,
}

/// "Your order is confirmed", with its lines and total.
pub fn order_confirmed(e: &OrderConfirmed) -> Content {
    let short = short_id(e.order_id);
    let mut text = format!(
        "Hello,\n\nthank you for your order {short}: it is confirmed, and the amount below was charged.\n\n"
    );
    let mut rows = String::new();
    for line in &e.lines {
        text.push_str(&format!(
            "  {} x {} ({})  {}\n",
            line.quantity,
            one_line(&line.name),
            one_line(&line.sku),
            format_money(&line.line_total)
        ));
        rows.push_str(&html_row(line));
    }
    text.push_str(&format!(
        "\nTotal: {}\n\nOrder: {}\nConfirmed: {}\n{}",
        format_money(&e.total),
        e.order_id,
        format_time(e.confirmed_at),
        SIGNATURE
    ));
    let html = format!(
        "<p>Hello,</p>\n<p>thank you for your order <strong>{short}</strong>: it is confirmed, and the amount below was charged.</p>\n\
         <table>\n<tr><th align=\"left\">Item</th><th align=\"right\">Qty</th><th align=\"right\">Amount</th></tr>\n{rows}\
         <tr><td><strong>Total</strong></td><td></td><td align=\"right\"><strong>{total}</strong></td></tr>\n</table>\n\
         <p>Order: {id}<br>Confirmed: {at}</p>\n<p>-- <br>jetshop</p>\n",
        total = escape(&format_money(&e.total)),
        id = e.order_id,
        at = format_time(e.confirmed_at),
    );
    Content {
        subject: format!("Your jetshop order {short} is confirmed"),
        text,
        html: wrap_html(&html),
    }
}

/// "Your order was cancelled", with the reason.
pub fn order_cancelled(e: &OrderCancelled) -> Content {
    let short = short_id(e.order_id);
    let reason = one_line(&e.reason);
    let text = format!(
        "Hello,\n\nyour order {short} was cancelled: {reason}.\nNothing was charged for it, and any amount held on your card was released.\n\n\
         Order: {}\nCancelled: {}\n{SIGNATURE}",
        e.order_id,
        format_time(e.cancelled_at),
    );
    let html = format!(
        "<p>Hello,</p>\n<p>your order <strong>{short}</strong> was cancelled: {reason}.<br>\
         Nothing was charged for it, and any amount held on your card was released.</p>\n\
         <p>Order: {id}<br>Cancelled: {at}</p>\n<p>-- <br>jetshop</p>\n",
        reason = escape(&reason),
        id = e.order_id,
        at = format_time(e.cancelled_at),
    );
    Content {
        subject: format!("Your jetshop order {short} was cancelled"),
        text,
        html: wrap_html(&html),
    }
}

/// "Welcome to jetshop".
pub fn welcome(user: &User) -> Content {
    let name = one_line(&user.display_name);
    let text = format!(
        "Hello {name},\n\nwelcome to jetshop! Your account {} is ready: sign in and place your first order.\n{SIGNATURE}",
        user.email
    );
    let html = format!(
        "<p>Hello {name},</p>\n<p>welcome to jetshop! Your account <strong>{email}</strong> is ready: sign in and place your first order.</p>\n<p>-- <br>jetshop</p>\n",
        name = escape(&name),
        email = escape(&user.email),
    );
    Content {
        subject: format!("Welcome to jetshop, {name}"),
        text,
        html: wrap_html(&html),
    }
}

/// The full message: from, to, subject, the deterministic Message-ID, and
/// the text with its HTML alternative.
pub fn build(
    from: &Mailbox,
    to: &Mailbox,
    delivery_id: Uuid,
    content: &Content,
) -> Result<lettre::Message, Error> {
    Ok(lettre::Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(content.subject.clone())
        .message_id(Some(message_id(from, delivery_id)))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            content.text.clone(),
            content.html.clone(),
        ))?)
}

/// `<delivery id@sender's domain>`: the same for every send of one delivery.
pub fn message_id(from: &Mailbox, delivery_id: Uuid) -> String {
    format!("<{delivery_id}@{}>", from.email.domain())
}

/// Amounts in their currency's minor unit (two decimals for most, none for
/// JPY and the like, three for the dinars).
pub fn format_money(m: &Money) -> String {
    let decimals = match m.currency.as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    };
    let sign = if m.amount_minor < 0 { "-" } else { "" };
    let abs = m.amount_minor.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs} {}", m.currency);
    }
    let unit = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$} {}",
        abs / unit,
        abs % unit,
        m.currency,
        width = decimals as usize
    )
}

/// Whether `address` is an email address a message can be sent to.
pub fn parse_recipient(address: &str) -> Option<Mailbox> {
    address.trim().parse::<Mailbox>().ok()
}

const SIGNATURE: &str = "\n-- \njetshop\n";

/// The last eight hex digits of an order id, upper case: enough for people.
/// (Not the first: ids are UUIDv7, whose first digits are a timestamp that
/// orders placed in the same minute share.)
fn short_id(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 8..].to_ascii_uppercase()
}

fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Names and reasons come from other services: keep them on one line so
/// they cannot shape the message (the subject above all).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn html_row(line: &OrderLine) -> String {
    format!(
        "<tr><td>{} ({})</td><td align=\"right\">{}</td><td align=\"right\">{}</td></tr>\n",
        escape(&one_line(&line.name)),
        escape(&one_line(&line.sku)),
        line.quantity,
        escape(&format_money(&line.line_total))
    )
}

fn wrap_html(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body style=\"font-family: sans-serif\">\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount_minor: i64, currency: &str) -> Money {
        Money {
            amount_minor,
            currency: currency.into(),
        }
    }

    fn confirmed() -> OrderConfirmed {
        OrderConfirmed {
            order_id: Uuid::parse_str("0190a3b4-0000-7000-8000-000000000001").unwrap(),
            customer_id: Uuid::new_v4(),
            customer_email: Some("ada@example.com".into()),
            lines: vec![OrderLine {
                product_id: Uuid::new_v4(),
                sku: "MUG-1".into(),
                name: "Blue <mug>".into(),
                quantity: 2,
                unit_price: money(1500, "EUR"),
                line_total: money(3000, "EUR"),
            }],
            total: money(3000, "EUR"),
            confirmed_at: Utc::now(),
        }
    }

    #[test]
    fn money_uses_the_currency_minor_unit() {
        assert_eq!(format_money(&money(3000, "EUR")), "30.00 EUR");
        assert_eq!(format_money(&money(5, "USD")), "0.05 USD");
        assert_eq!(format_money(&money(1200, "JPY")), "1200 JPY");
        assert_eq!(format_money(&money(1234, "KWD")), "1.234 KWD");
        assert_eq!(format_money(&money(-250, "EUR")), "-2.50 EUR");
    }

    #[test]
    fn confirmation_lists_lines_and_total_and_escapes_html() {
        let c = order_confirmed(&confirmed());
        assert_eq!(c.subject, "Your jetshop order 00000001 is confirmed");
        assert!(
            c.text.contains("2 x Blue <mug> (MUG-1)  30.00 EUR"),
            "{}",
            c.text
        );
        assert!(c.text.contains("Total: 30.00 EUR"));
        assert!(c.html.contains("Blue &lt;mug&gt;"), "{}", c.html);
        assert!(!c.html.contains("<mug>"));
    }

    #[test]
    fn cancellation_gives_the_reason_on_one_line() {
        let c = order_cancelled(&OrderCancelled {
            order_id: Uuid::new_v4(),
            customer_id: Uuid::new_v4(),
            customer_email: None,
            reason: "card declined\r\nBcc: evil@example.com".into(),
            cancelled_at: Utc::now(),
        });
        assert!(c.subject.ends_with("was cancelled"));
        assert!(
            c.text
                .contains("was cancelled: card declined  Bcc: evil@example.com.")
        );
    }

    #[test]
    fn message_id_is_derived_from_the_delivery() {
        let from: Mailbox = "jetshop <no-reply@jetshop.local>".parse().unwrap();
        let to: Mailbox = "ada@example.com".parse().unwrap();
        let id = Uuid::new_v4();
        let a = build(&from, &to, id, &order_confirmed(&confirmed())).unwrap();
        let text = String::from_utf8(a.formatted()).unwrap();
        assert!(
            text.contains(&format!("Message-ID: <{id}@jetshop.local>")),
            "{text}"
        );
        assert!(text.contains("To: ada@example.com"));
        assert!(text.contains("multipart/alternative"));
    }

    #[test]
    fn recipients_must_be_addresses() {
        assert!(parse_recipient("ada@example.com").is_some());
        assert!(parse_recipient("Ada <ada@example.com>").is_some());
        assert!(parse_recipient("not an address").is_none());
        assert!(parse_recipient("").is_none());
    }
}
