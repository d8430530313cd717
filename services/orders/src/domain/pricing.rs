//! Turning a `PlaceOrder` into priced lines: validation of what the
//! customer asked for, then prices frozen from the catalog's products.

use std::collections::BTreeMap;

use jetshop_contracts::{
    catalog::{Money, Product},
    orders::{LineRequest, MAX_LINES, MAX_QUANTITY, OrderLine, PlaceOrder},
};
use uuid::Uuid;

use crate::Error;

/// Check a placement and merge lines of the same product, in product order.
pub fn validate(cmd: &PlaceOrder) -> Result<Vec<LineRequest>, Error> {
    if cmd.lines.is_empty() {
        return Err(Error::invalid("lines", "an order needs at least one line"));
    }
    if cmd.lines.len() > MAX_LINES {
        return Err(Error::invalid(
            "lines",
            format!("at most {MAX_LINES} lines per order"),
        ));
    }
    let token = cmd.card_token.as_str();
    if token.is_empty()
        || token.len() > 64
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::invalid(
            "card_token",
            "1 to 64 letters, digits or underscores",
        ));
    }
    let mut merged: BTreeMap<Uuid, i64> = BTreeMap::new();
    for line in &cmd.lines {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(Error::invalid(
                "quantity",
                format!(
                    "{} for product {}: must be 1..={MAX_QUANTITY}",
                    line.quantity, line.product_id
                ),
            ));
        }
        *merged.entry(line.product_id).or_default() += line.quantity;
    }
    if let Some((id, q)) = merged.iter().find(|(_, q)| **q > MAX_QUANTITY) {
        return Err(Error::invalid(
            "quantity",
            format!("{q} units of product {id} in total: must be at most {MAX_QUANTITY}"),
        ));
    }
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| LineRequest {
            product_id,
            quantity,
        })
        .collect())
}

/// Freeze prices: each line priced from its product. Returns the lines and
/// their total, or why the order cannot be placed (a business outcome: the
/// order is recorded as cancelled with this reason).
pub fn price(
    lines: &[LineRequest],
    products: &[Option<Product>],
) -> Result<(Vec<OrderLine>, Money), String> {
    let mut priced = Vec::with_capacity(lines.len());
    let mut currency: Option<&str> = None;
    let mut total: i64 = 0;
    for (line, product) in lines.iter().zip(products) {
        let Some(p) = product else {
            return Err(format!("product {} is not in the catalog", line.product_id));
        };
        match currency {
            None => currency = Some(&p.price.currency),
            Some(c) if c != p.price.currency => {
                return Err(format!(
                    "products in {c} and {} cannot be in one order",
                    p.price.currency
                ));
            }
            Some(_) => {}
        }
        let line_total = p
            .price
            .amount_minor
            .checked_mul(line.quantity)
            .ok_or_else(|| "order total is too large".to_owned())?;
        total = total
            .checked_add(line_total)
            .ok_or_else(|| "order total is too large".to_owned())?;
        priced.push(OrderLine {
            product_id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            quantity: line.quantity,
            unit_price: p.price.clone(),
            line_total: Money {
                amount_minor: line_total,
                currency: p.price.currency.clone(),
            },
        });
    }
    let currency = currency.unwrap_or("EUR").to_owned();
    Ok((
        priced,
        Money {
            amount_minor: total,
            currency,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn product(price: i64, currency: &str) -> Product {
        Product {
            id: Uuid::now_v7(),
            sku: "SKU".into(),
            name: "Thing".into(),
            description: String::new(),
            price: Money {
                amount_minor: price,
                currency: currency.into(),
            },
            stock: 10,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn place(lines: Vec<(Uuid, i64)>, token: &str) -> PlaceOrder {
        PlaceOrder {
            order_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            customer_email: None,
            lines: lines
                .into_iter()
                .map(|(product_id, quantity)| LineRequest {
                    product_id,
                    quantity,
                })
                .collect(),
            card_token: token.into(),
        }
    }

    #[test]
    fn lines_of_one_product_merge_and_bad_input_is_refused() {
        let a = Uuid::now_v7();
        let merged = validate(&place(vec![(a, 2), (a, 3)], "tok_visa")).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].quantity, 5);
        for bad in [
            place(vec![], "tok_visa"),
            place(vec![(a, 0)], "tok_visa"),
            place(vec![(a, 1001)], "tok_visa"),
            place(vec![(a, 600), (a, 600)], "tok_visa"),
            place(vec![(a, 1)], ""),
            place(vec![(a, 1)], "tok visa"),
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prices_are_frozen_and_summed() {
        let (p, q) = (product(250, "EUR"), product(1000, "EUR"));
        let lines = vec![
            LineRequest {
                product_id: p.id,
                quantity: 2,
            },
            LineRequest {
                product_id: q.id,
                quantity: 1,
            },
        ];
        let (priced, total) = price(&lines, &[Some(p), Some(q)]).unwrap();
        assert_eq!(priced[0].line_total.amount_minor, 500);
        assert_eq!(total.amount_minor, 1500);
        assert_eq!(total.currency, "EUR");
    }

    #[test]
    fn unknown_products_and_mixed_currencies_cannot_be_placed() {
        let line = |id| LineRequest {
            product_id: id,
            quantity: 1,
        };
        let (p, q) = (product(1, "EUR"), product(1, "USD"));
        assert!(
            price(&[line(p.id)], &[None])
                .unwrap_err()
                .contains("not in the catalog")
        );
        assert!(
            price(&[line(p.id), line(q.id)], &[Some(p), Some(q)])
                .unwrap_err()
                .contains("cannot be in one order")
        );
    }
}
