//! The double-entry ledger: every money movement is a transaction of
//! postings whose debits equal its credits.
//!
//! # Chart of accounts
//!
//! | account | kind | its balance means |
//! |---|---|---|
//! | `customer_holds` | asset (memo), debit-normal | money held on customers' cards, not yet ours |
//! | `authorizations_pending` | liability (memo), credit-normal | the same holds, owed back to customers unless captured |
//! | `provider_receivable` | asset, debit-normal | captured money the processor owes us (settlement) |
//! | `revenue` | income, credit-normal | money taken from customers, net of refunds |
//!
//! The two memo accounts mirror each other: a hold is an asset we may
//! claim and, until we do, a promise to release it.
//!
//! # Movements
//!
//! | movement | debit | credit |
//! |---|---|---|
//! | authorize A | `customer_holds` A | `authorizations_pending` A |
//! | capture A | `authorizations_pending` A, `provider_receivable` A | `customer_holds` A, `revenue` A |
//! | void A | `authorizations_pending` A | `customer_holds` A |
//! | refund A | `revenue` A | `provider_receivable` A |
//!
//! So every transaction balances; after a capture `revenue` holds exactly
//! the captured amount and the hold is gone from both memo accounts; a void
//! reverses the authorization and a refund reverses the revenue. When every
//! intent is closed (captured, voided or refunded), `customer_holds` and
//! `authorizations_pending` are zero and `revenue` equals
//! `provider_receivable`: the money captured and not given back.
//!
//! Each movement of a payment has a deterministic transaction id
//! ([`txn_id`]) and the table is unique on (transaction, account): even a
//! bug that tried to post a capture twice would fail instead of counting
//! the money twice.

use uuid::Uuid;

/// An account of the chart (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// Money held on customers' cards.
    CustomerHolds,
    /// Those holds, owed back unless captured.
    AuthorizationsPending,
    /// Captured money the processor owes us.
    ProviderReceivable,
    /// Money taken, net of refunds.
    Revenue,
}

impl Account {
    /// Every account.
    pub const ALL: [Account; 4] = [
        Account::CustomerHolds,
        Account::AuthorizationsPending,
        Account::ProviderReceivable,
        Account::Revenue,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Account::CustomerHolds => "customer_holds",
            Account::AuthorizationsPending => "authorizations_pending",
            Account::ProviderReceivable => "provider_receivable",
            Account::Revenue => "revenue",
        }
    }

    /// Whether the account's balance is debits minus credits (assets) rather
    /// than credits minus debits (liabilities, income).
    pub fn debit_normal(self) -> bool {
        matches!(self, Account::CustomerHolds | Account::ProviderReceivable)
    }
}

/// What kind of money movement a transaction records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MovementKind {
    /// A hold was placed.
    Authorize,
    /// Held money was taken.
    Capture,
    /// A hold was released.
    Void,
    /// Taken money was given back.
    Refund,
}

impl MovementKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Authorize => "authorize",
            MovementKind::Capture => "capture",
            MovementKind::Void => "void",
            MovementKind::Refund => "refund",
        }
    }

    /// Read a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "authorize" => MovementKind::Authorize,
            "capture" => MovementKind::Capture,
            "void" => MovementKind::Void,
            "refund" => MovementKind::Refund,
            _ => return None,
        })
    }
}

/// One movement to book: a kind, an amount and the provider's reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    /// What happened.
    pub kind: MovementKind,
    /// How much, in minor units of the intent's currency.
    pub amount_minor: i64,
    /// The provider's reference for it, when known.
    pub provider_ref: Option<String>,
}

impl Movement {
    fn new(kind: MovementKind, amount_minor: i64, provider_ref: Option<&str>) -> Self {
        Self {
            kind,
            amount_minor,
            provider_ref: provider_ref.map(str::to_owned),
        }
    }

    /// A hold placed.
    pub fn authorize(amount_minor: i64, provider_ref: Option<&str>) -> Self {
        Self::new(MovementKind::Authorize, amount_minor, provider_ref)
    }

    /// Held money taken.
    pub fn capture(amount_minor: i64, provider_ref: Option<&str>) -> Self {
        Self::new(MovementKind::Capture, amount_minor, provider_ref)
    }

    /// A hold released.
    pub fn void(amount_minor: i64, provider_ref: Option<&str>) -> Self {
        Self::new(MovementKind::Void, amount_minor, provider_ref)
    }

    /// Taken money given back.
    pub fn refund(amount_minor: i64, provider_ref: Option<&str>) -> Self {
        Self::new(MovementKind::Refund, amount_minor, provider_ref)
    }

    /// The postings of this movement, debits equal to credits.
    pub fn postings(&self) -> Vec<Posting> {
        use Account::*;
        let a = self.amount_minor;
        match self.kind {
            MovementKind::Authorize => vec![
                Posting::debit(CustomerHolds, a),
                Posting::credit(AuthorizationsPending, a),
            ],
            MovementKind::Capture => vec![
                Posting::debit(AuthorizationsPending, a),
                Posting::credit(CustomerHolds, a),
                Posting::debit(ProviderReceivable, a),
                Posting::credit(Revenue, a),
            ],
            MovementKind::Void => vec![
                Posting::debit(AuthorizationsPending, a),
                Posting::credit(CustomerHolds, a),
            ],
            MovementKind::Refund => vec![
                Posting::debit(Revenue, a),
                Posting::credit(ProviderReceivable, a),
            ],
        }
    }
}

/// One line of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Debited amount (zero on a credit line).
    pub debit_minor: i64,
    /// Credited amount (zero on a debit line).
    pub credit_minor: i64,
}

impl Posting {
    fn debit(account: Account, amount: i64) -> Self {
        Self {
            account,
            debit_minor: amount,
            credit_minor: 0,
        }
    }

    fn credit(account: Account, amount: i64) -> Self {
        Self {
            account,
            debit_minor: 0,
            credit_minor: amount,
        }
    }
}

/// Namespace of ledger transaction ids.
const TXN_NAMESPACE: &[u8] = b"jetshop.payments.ledger";

/// The transaction id of a payment's movement: one per payment and kind.
pub fn txn_id(payment_id: Uuid, kind: MovementKind) -> Uuid {
    let mut name = TXN_NAMESPACE.to_vec();
    name.push(b':');
    name.extend_from_slice(kind.as_str().as_bytes());
    Uuid::new_v5(&payment_id, &name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn balances(movements: &[Movement]) -> BTreeMap<Account, i64> {
        let mut out = BTreeMap::new();
        for p in movements.iter().flat_map(Movement::postings) {
            let signed = if p.account.debit_normal() {
                p.debit_minor - p.credit_minor
            } else {
                p.credit_minor - p.debit_minor
            };
            *out.entry(p.account).or_insert(0) += signed;
        }
        out
    }

    fn of(b: &BTreeMap<Account, i64>, a: Account) -> i64 {
        b.get(&a).copied().unwrap_or(0)
    }

    #[test]
    fn every_movement_balances() {
        for m in [
            Movement::authorize(1500, None),
            Movement::capture(1500, None),
            Movement::void(1500, None),
            Movement::refund(1500, None),
        ] {
            let p = m.postings();
            let debits: i64 = p.iter().map(|p| p.debit_minor).sum();
            let credits: i64 = p.iter().map(|p| p.credit_minor).sum();
            assert_eq!(debits, credits, "{m:?}");
            let mut accounts: Vec<_> = p.iter().map(|p| p.account).collect();
            accounts.dedup();
            assert_eq!(accounts.len(), p.len(), "one line per account: {m:?}");
        }
    }

    #[test]
    fn after_a_capture_revenue_holds_the_captured_amount_and_no_hold_is_left() {
        let b = balances(&[
            Movement::authorize(1500, None),
            Movement::capture(1500, None),
        ]);
        assert_eq!(of(&b, Account::Revenue), 1500);
        assert_eq!(of(&b, Account::ProviderReceivable), 1500);
        assert_eq!(of(&b, Account::CustomerHolds), 0);
        assert_eq!(of(&b, Account::AuthorizationsPending), 0);
    }

    #[test]
    fn void_and_refund_reverse() {
        let voided = balances(&[Movement::authorize(900, None), Movement::void(900, None)]);
        assert!(voided.values().all(|v| *v == 0), "{voided:?}");
        let refunded = balances(&[
            Movement::authorize(900, None),
            Movement::capture(900, None),
            Movement::refund(900, None),
        ]);
        assert!(refunded.values().all(|v| *v == 0), "{refunded:?}");
    }

    #[test]
    fn transaction_ids_are_one_per_payment_and_movement() {
        let p = Uuid::new_v4();
        assert_eq!(
            txn_id(p, MovementKind::Capture),
            txn_id(p, MovementKind::Capture)
        );
        assert_ne!(
            txn_id(p, MovementKind::Capture),
            txn_id(p, MovementKind::Void)
        );
        assert_ne!(
            txn_id(p, MovementKind::Capture),
            txn_id(Uuid::new_v4(), MovementKind::Capture)
        );
        for k in [
            MovementKind::Authorize,
            MovementKind::Capture,
            MovementKind::Void,
            MovementKind::Refund,
        ] {
            assert_eq!(MovementKind::parse(k.as_str()), Some(k));
        }
    }
}
