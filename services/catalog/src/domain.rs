//! The rules of a product, as types that can only hold valid values.
//! Wire shapes from `contracts` are parsed into these on the way in.

use jetshop_contracts::catalog as wire;

use crate::Error;

/// A stock keeping unit: 1 to 64 of `A-Z 0-9 - _ .`, stored upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    /// Parse and normalise.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim().to_ascii_uppercase();
        if s.is_empty() || s.len() > 64 {
            return Err(Error::invalid("sku", "must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid(
                "sku",
                "may only hold letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(s))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// Parse.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim();
        match s.chars().count() {
            0 => Err(Error::invalid("name", "must not be empty")),
            n if n > 200 => Err(Error::invalid("name", "must be at most 200 characters")),
            _ => Ok(Self(s.to_owned())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description of at most 5000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Parse.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.chars().count() > 5000 {
            return Err(Error::invalid(
                "description",
                "must be at most 5000 characters",
            ));
        }
        Ok(Self(raw.trim().to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-negative amount in a currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    amount_minor: i64,
    currency: String,
}

impl Money {
    /// Parse from the wire.
    pub fn parse(raw: &wire::Money) -> Result<Self, Error> {
        if raw.amount_minor < 0 {
            return Err(Error::invalid("price.amount_minor", "must not be negative"));
        }
        let currency = raw.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "price.currency",
                "must be a three-letter ISO 4217 code",
            ));
        }
        Ok(Self {
            amount_minor: raw.amount_minor,
            currency,
        })
    }

    /// Amount in minor units.
    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// ISO 4217 code.
    pub fn currency(&self) -> &str {
        &self.currency
    }
}

/// Units on hand: never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock(i64);

impl Stock {
    /// Parse.
    pub fn parse(units: i64) -> Result<Self, Error> {
        if units < 0 {
            return Err(Error::invalid("stock", "must not be negative"));
        }
        Ok(Self(units))
    }

    /// The units.
    pub fn units(self) -> i64 {
        self.0
    }
}

/// A validated create command.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Id chosen by the caller.
    pub id: uuid::Uuid,
    /// Sku.
    pub sku: Sku,
    /// Name.
    pub name: ProductName,
    /// Description.
    pub description: Description,
    /// Price.
    pub price: Money,
    /// Initial stock.
    pub stock: Stock,
}

impl NewProduct {
    /// Validate a create command.
    pub fn parse(cmd: &wire::CreateProduct) -> Result<Self, Error> {
        Ok(Self {
            id: cmd.id,
            sku: Sku::parse(&cmd.sku)?,
            name: ProductName::parse(&cmd.name)?,
            description: Description::parse(&cmd.description)?,
            price: Money::parse(&cmd.price)?,
            stock: Stock::parse(cmd.stock)?,
        })
    }
}

/// A validated update command: the fields to change.
#[derive(Debug, Clone)]
pub struct ProductChanges {
    /// New name.
    pub name: Option<ProductName>,
    /// New description.
    pub description: Option<Description>,
    /// New price.
    pub price: Option<Money>,
}

impl ProductChanges {
    /// Validate an update command; an update that changes nothing is invalid.
    pub fn parse(cmd: &wire::UpdateProduct) -> Result<Self, Error> {
        let changes = Self {
            name: cmd.name.as_deref().map(ProductName::parse).transpose()?,
            description: cmd
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()?,
            price: cmd.price.as_ref().map(Money::parse).transpose()?,
        };
        if changes.name.is_none() && changes.description.is_none() && changes.price.is_none() {
            return Err(Error::invalid("update", "names no field to change"));
        }
        Ok(changes)
    }
}

/// A validated reservation: at least one line, one line per product (lines
/// of the same product added together), each of at least one unit, ordered
/// by product id so that concurrent reservations lock product rows in the
/// same order and never deadlock each other.
#[derive(Debug, Clone)]
pub struct ReservationRequest {
    /// The order.
    pub order_id: uuid::Uuid,
    /// Merged lines, ordered by product id.
    pub lines: Vec<wire::ReservationLine>,
}

impl ReservationRequest {
    /// Validate and merge a reserve command.
    pub fn parse(cmd: &wire::ReserveStock) -> Result<Self, Error> {
        if cmd.lines.is_empty() {
            return Err(Error::invalid("lines", "must hold at least one line"));
        }
        let mut merged = std::collections::BTreeMap::<uuid::Uuid, i64>::new();
        for line in &cmd.lines {
            if line.quantity < 1 {
                return Err(Error::invalid(
                    "quantity",
                    format!(
                        "must be at least 1 (product {} asks for {})",
                        line.product_id, line.quantity
                    ),
                ));
            }
            let total = merged.entry(line.product_id).or_insert(0);
            *total = total
                .checked_add(line.quantity)
                .ok_or_else(|| Error::invalid("quantity", "is too large"))?;
        }
        Ok(Self {
            order_id: cmd.order_id,
            lines: merged
                .into_iter()
                .map(|(product_id, quantity)| wire::ReservationLine {
                    product_id,
                    quantity,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(a: i64, c: &str) -> wire::Money {
        wire::Money {
            amount_minor: a,
            currency: c.into(),
        }
    }

    #[test]
    fn sku_is_normalised_and_checked() {
        assert_eq!(Sku::parse(" mug-01 ").unwrap().as_str(), "MUG-01");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn money_must_be_positive_with_an_iso_code() {
        assert_eq!(Money::parse(&money(1299, "eur")).unwrap().currency(), "EUR");
        assert!(Money::parse(&money(-1, "EUR")).is_err());
        assert!(Money::parse(&money(1, "EURO")).is_err());
        assert!(Money::parse(&money(1, "E1R")).is_err());
    }

    #[test]
    fn stock_and_names_have_bounds() {
        assert!(Stock::parse(-1).is_err());
        assert_eq!(Stock::parse(0).unwrap().units(), 0);
        assert!(ProductName::parse("   ").is_err());
        assert!(Description::parse(&"d".repeat(5001)).is_err());
    }

    #[test]
    fn empty_update_is_refused() {
        let cmd = wire::UpdateProduct {
            id: uuid::Uuid::nil(),
            name: None,
            description: None,
            price: None,
        };
        assert!(ProductChanges::parse(&cmd).is_err());
    }

    #[test]
    fn reservation_lines_merge_sort_and_need_a_positive_quantity() {
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let line = |product_id, quantity| wire::ReservationLine {
            product_id,
            quantity,
        };
        let cmd = |lines| wire::ReserveStock {
            order_id: uuid::Uuid::nil(),
            lines,
        };
        let r = ReservationRequest::parse(&cmd(vec![line(b, 1), line(a, 2), line(b, 3)])).unwrap();
        assert_eq!(r.lines, vec![line(a, 2), line(b, 4)]);
        assert!(ReservationRequest::parse(&cmd(vec![])).is_err());
        assert!(ReservationRequest::parse(&cmd(vec![line(a, 0)])).is_err());
        assert!(ReservationRequest::parse(&cmd(vec![line(a, -1)])).is_err());
        assert!(ReservationRequest::parse(&cmd(vec![line(a, i64::MAX), line(a, 1)])).is_err());
    }
}
