//! Money as the API shows it and takes it: the same shape in product and
//! order bodies, mapped from and to the wire type of the contracts.

use jetshop_contracts::catalog as wire;
use poem_openapi::Object;

/// A price in the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Money")]
pub struct MoneyBody {
    /// Amount in minor units (cents for EUR and USD), never negative.
    pub amount_minor: i64,
    /// ISO 4217 currency code, upper case (`EUR`).
    pub currency: String,
}

impl From<wire::Money> for MoneyBody {
    fn from(m: wire::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

/// A price to set: an amount in the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "NewMoney", deny_unknown_fields)]
pub struct NewMoneyBody {
    /// Amount in minor units (cents for EUR and USD), never negative.
    #[oai(validator(minimum(value = "0")))]
    pub amount_minor: i64,
    /// ISO 4217 currency code (`EUR`); stored upper case.
    #[oai(validator(pattern = "^[A-Za-z]{3}$"))]
    pub currency: String,
}

impl From<NewMoneyBody> for wire::Money {
    fn from(m: NewMoneyBody) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency.to_ascii_uppercase(),
        }
    }
}
