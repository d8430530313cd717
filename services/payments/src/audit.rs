//! Reading the books: what every intent came to and whether the ledger
//! balances. Used by the system-wide invariant tests and by operators; it
//! only reads.

use std::collections::{BTreeMap, HashMap};

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    Error,
    domain::IntentState,
    ledger::{Account, MovementKind},
    storage::{entries, intents},
};

/// One order's payment, with its movements counted from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentSummary {
    /// The order.
    pub order_id: Uuid,
    /// Where its intent stands.
    pub state: IntentState,
    /// The intent's amount in minor units (zero for a tombstone).
    pub amount_minor: i64,
    /// ISO 4217 code (`XXX` for a tombstone).
    pub currency: String,
    /// Authorization transactions booked (0 or 1).
    pub authorizations: u32,
    /// Capture transactions booked (0 or 1).
    pub captures: u32,
    /// Void transactions booked (0 or 1).
    pub voids: u32,
    /// Refund transactions booked (0 or 1).
    pub refunds: u32,
    /// The decline code, when an authorize was refused.
    pub decline_code: Option<String>,
}

/// Every intent, by order id, with its movements.
pub async fn intents(db: &DatabaseConnection) -> Result<Vec<IntentSummary>, Error> {
    let mut counts: HashMap<(String, MovementKind), u32> = HashMap::new();
    for (order_id, movement, n) in entries::movement_counts(db).await? {
        let kind = MovementKind::parse(&movement)
            .ok_or_else(|| Error::Internal(format!("unknown ledger movement {movement:?}")))?;
        counts.insert((order_id, kind), u32::try_from(n).unwrap_or(u32::MAX));
    }
    intents::all(db)
        .await?
        .into_iter()
        .map(|row| {
            let order_id = row.order_id.clone();
            summarize(row, |kind| {
                counts.get(&(order_id.clone(), kind)).copied().unwrap_or(0)
            })
        })
        .collect()
}

/// One order's intent, if it has one.
pub async fn intent(
    db: &DatabaseConnection,
    order_id: Uuid,
) -> Result<Option<IntentSummary>, Error> {
    // Small enough per call for tests and ops; the ledger query is indexed.
    let Some(row) = intents::find(db, order_id).await? else {
        return Ok(None);
    };
    let lines = entries::of_order(db, order_id).await?;
    let count = |kind: MovementKind| {
        let mut txns: Vec<&str> = lines
            .iter()
            .filter(|l| l.movement == kind.as_str())
            .map(|l| l.txn_id.as_str())
            .collect();
        txns.sort_unstable();
        txns.dedup();
        u32::try_from(txns.len()).unwrap_or(u32::MAX)
    };
    summarize(row, count).map(Some)
}

/// An intent with its movements, counted by `count`.
fn summarize(
    row: intents::Model,
    count: impl Fn(MovementKind) -> u32,
) -> Result<IntentSummary, Error> {
    Ok(IntentSummary {
        order_id: row.order_uuid()?,
        state: row.state,
        amount_minor: row.amount_minor,
        authorizations: count(MovementKind::Authorize),
        captures: count(MovementKind::Capture),
        voids: count(MovementKind::Void),
        refunds: count(MovementKind::Refund),
        currency: row.currency,
        decline_code: row.decline_code,
    })
}

/// Debits and credits of one account in one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountTotals {
    /// Sum of debits, minor units.
    pub debit_minor: i64,
    /// Sum of credits, minor units.
    pub credit_minor: i64,
}

impl AccountTotals {
    /// Debits minus credits.
    pub fn net_debit(&self) -> i64 {
        self.debit_minor - self.credit_minor
    }
}

/// The trial balance of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialBalance {
    /// Sum of every debit, minor units (all currencies).
    pub total_debits: i64,
    /// Sum of every credit, minor units (all currencies).
    pub total_credits: i64,
    /// Totals per account and currency (`(account, currency)`).
    pub per_account: BTreeMap<(String, String), AccountTotals>,
    /// Transactions whose own debits and credits differ (should be none).
    pub unbalanced_transactions: Vec<String>,
}

impl TrialBalance {
    /// Whether the books balance: debits equal credits in total, per
    /// currency, and within every transaction.
    pub fn balances(&self) -> bool {
        let mut per_currency: BTreeMap<&str, i64> = BTreeMap::new();
        for ((_, currency), t) in &self.per_account {
            *per_currency.entry(currency.as_str()).or_insert(0) += t.net_debit();
        }
        self.total_debits == self.total_credits
            && per_currency.values().all(|net| *net == 0)
            && self.unbalanced_transactions.is_empty()
    }

    /// The balance of `account` in `currency` on its normal side: debits
    /// minus credits for assets, credits minus debits for liabilities and
    /// income (so `revenue` is positive when money was taken).
    pub fn balance(&self, account: Account, currency: &str) -> i64 {
        let t = self
            .per_account
            .get(&(account.as_str().to_owned(), currency.to_owned()))
            .copied()
            .unwrap_or_default();
        if account.debit_normal() {
            t.net_debit()
        } else {
            -t.net_debit()
        }
    }
}

/// Sum the ledger.
pub async fn trial_balance(db: &DatabaseConnection) -> Result<TrialBalance, Error> {
    let mut tb = TrialBalance::default();
    for (account, currency, debits, credits) in entries::account_totals(db).await? {
        tb.total_debits += debits;
        tb.total_credits += credits;
        tb.per_account.insert(
            (account, currency),
            AccountTotals {
                debit_minor: debits,
                credit_minor: credits,
            },
        );
    }
    tb.unbalanced_transactions = entries::unbalanced_transactions(db).await?;
    Ok(tb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(rows: &[(&str, &str, i64, i64)]) -> TrialBalance {
        let mut tb = TrialBalance::default();
        for (a, c, d, cr) in rows {
            tb.total_debits += d;
            tb.total_credits += cr;
            tb.per_account.insert(
                ((*a).into(), (*c).into()),
                AccountTotals {
                    debit_minor: *d,
                    credit_minor: *cr,
                },
            );
        }
        tb
    }

    #[test]
    fn balances_needs_equal_sides_per_currency() {
        let ok = tb(&[
            ("customer_holds", "EUR", 100, 100),
            ("authorizations_pending", "EUR", 100, 100),
            ("provider_receivable", "EUR", 100, 0),
            ("revenue", "EUR", 0, 100),
        ]);
        assert!(ok.balances());
        assert_eq!(ok.balance(Account::Revenue, "EUR"), 100);
        assert_eq!(ok.balance(Account::ProviderReceivable, "EUR"), 100);
        assert_eq!(ok.balance(Account::CustomerHolds, "EUR"), 0);
        // Equal in total, but a euro debit against a dollar credit.
        let mixed = tb(&[("revenue", "EUR", 100, 0), ("revenue", "USD", 0, 100)]);
        assert!(!mixed.balances());
    }
}
