//! A small demo catalog for `jetshop up --seed-demo`. Ids are derived from
//! the sku (UUIDv5), so seeding twice creates nothing new.

use jetshop_contracts::catalog::{CreateProduct, Money};
use uuid::Uuid;

/// Namespace for demo product ids.
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x6a65_7473_686f_7000_8000_0000_0000_0001);

/// The demo products.
pub fn products() -> Vec<CreateProduct> {
    let items: [(&str, &str, &str, i64, i64); 8] = [
        (
            "MUG-BLUE",
            "Blue enamel mug",
            "A 350 ml enamel mug that survives campfires.",
            1299,
            40,
        ),
        (
            "TEE-NATS",
            "NATS t-shirt",
            "Organic cotton, printed with a subject hierarchy.",
            2499,
            25,
        ),
        (
            "BOOK-DDIA",
            "Designing Data-Intensive Applications",
            "The book on the hard parts.",
            4599,
            12,
        ),
        (
            "SOCK-RUST",
            "Rustacean socks",
            "Orange, warm, memory-safe.",
            999,
            60,
        ),
        (
            "BAG-TOTE",
            "Canvas tote bag",
            "Carries a laptop and a baguette.",
            1899,
            30,
        ),
        (
            "KEY-MECH",
            "Mechanical keyboard",
            "Tactile switches, hot-swappable.",
            12900,
            5,
        ),
        (
            "LAMP-DESK",
            "Desk lamp",
            "Warm light for long debugging sessions.",
            3450,
            8,
        ),
        (
            "CARD-GIFT",
            "Gift card",
            "Redeemable for anything in the shop.",
            5000,
            1000,
        ),
    ];
    items
        .into_iter()
        .map(|(sku, name, description, price, stock)| CreateProduct {
            id: Uuid::new_v5(&DEMO_NAMESPACE, sku.as_bytes()),
            sku: sku.into(),
            name: name.into(),
            description: description.into(),
            price: Money {
                amount_minor: price,
                currency: "EUR".into(),
            },
            stock,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_ids_are_stable_and_distinct() {
        let a = products();
        let b = products();
        assert_eq!(a, b);
        let mut ids: Vec<_> = a.iter().map(|p| p.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), a.len());
        for p in &a {
            assert!(
                crate::domain::NewProduct::parse(p).is_ok(),
                "{} is invalid",
                p.sku
            );
        }
    }
}
