//! The order saga as a pure state machine: given where a saga stands and
//! what just happened, what it records, what it sends next and where it
//! goes. The handlers do the I/O (one transaction per decision); this
//! module holds every rule, so the rules are tested without NATS or SQL.
//!
//! ```text
//! reserving_stock --reserved--> authorizing_payment --authorized--> capturing_payment
//!   |rejected: cancelled          |declined: releasing_stock          |captured
//!   |cancel/timeout:              |cancel/timeout: voiding_payment    v
//!   v releasing_stock             v                              committing_stock
//! releasing_stock <--voided-- voiding_payment                         |committed: confirmed
//!   |released: cancelled                                              |timeout: refunding_payment
//! refunding_payment --refunded--> releasing_stock
//! ```
//!
//! Every waiting state has a deadline. A forward step that misses it is
//! sent again (`step_attempts` sends in all, each waiting longer: see
//! `engine::Timing`) and then compensated; a
//! compensation that misses it as often is parked as `stuck` for an
//! operator, who can give it fresh attempts. A stuck saga still accepts the
//! answer it was waiting for, so one that arrives late completes it.

use jetshop_contracts::catalog::Money;
use uuid::Uuid;

/// Where a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaState {
    /// Waiting for the catalog to hold stock.
    ReservingStock,
    /// Waiting for payments to hold the money.
    AuthorizingPayment,
    /// Waiting for payments to take the money.
    CapturingPayment,
    /// Waiting for the catalog to make the reservation final.
    CommittingStock,
    /// Compensating: waiting for payments to release the hold.
    VoidingPayment,
    /// Compensating: waiting for the catalog to give the stock back.
    ReleasingStock,
    /// Compensating: waiting for payments to give the money back.
    RefundingPayment,
    /// Done (the order is confirmed or cancelled).
    Completed,
    /// A compensation kept failing; an operator must look.
    Stuck,
}

impl SagaState {
    /// Every state, for parsing and listing.
    pub const ALL: [Self; 9] = [
        Self::ReservingStock,
        Self::AuthorizingPayment,
        Self::CapturingPayment,
        Self::CommittingStock,
        Self::VoidingPayment,
        Self::ReleasingStock,
        Self::RefundingPayment,
        Self::Completed,
        Self::Stuck,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReservingStock => "reserving_stock",
            Self::AuthorizingPayment => "authorizing_payment",
            Self::CapturingPayment => "capturing_payment",
            Self::CommittingStock => "committing_stock",
            Self::VoidingPayment => "voiding_payment",
            Self::ReleasingStock => "releasing_stock",
            Self::RefundingPayment => "refunding_payment",
            Self::Completed => "completed",
            Self::Stuck => "stuck",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the saga still waits for something (and has a deadline).
    pub fn is_waiting(self) -> bool {
        !matches!(self, Self::Completed | Self::Stuck)
    }
}

/// A command the saga sends, one per waiting state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// catalog: ReserveStock.
    ReserveStock,
    /// payments: AuthorizePayment.
    AuthorizePayment,
    /// payments: CapturePayment.
    CapturePayment,
    /// catalog: CommitReservation.
    CommitReservation,
    /// payments: VoidPayment.
    VoidPayment,
    /// catalog: ReleaseStock.
    ReleaseStock,
    /// payments: RefundPayment.
    RefundPayment,
}

impl Step {
    /// Every step.
    pub const ALL: [Self; 7] = [
        Self::ReserveStock,
        Self::AuthorizePayment,
        Self::CapturePayment,
        Self::CommitReservation,
        Self::VoidPayment,
        Self::ReleaseStock,
        Self::RefundPayment,
    ];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReserveStock => "reserve_stock",
            Self::AuthorizePayment => "authorize_payment",
            Self::CapturePayment => "capture_payment",
            Self::CommitReservation => "commit_reservation",
            Self::VoidPayment => "void_payment",
            Self::ReleaseStock => "release_stock",
            Self::RefundPayment => "refund_payment",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The state in which the saga waits for this step's answer.
    pub fn waiting_state(self) -> SagaState {
        match self {
            Self::ReserveStock => SagaState::ReservingStock,
            Self::AuthorizePayment => SagaState::AuthorizingPayment,
            Self::CapturePayment => SagaState::CapturingPayment,
            Self::CommitReservation => SagaState::CommittingStock,
            Self::VoidPayment => SagaState::VoidingPayment,
            Self::ReleaseStock => SagaState::ReleasingStock,
            Self::RefundPayment => SagaState::RefundingPayment,
        }
    }

    /// Whether this step undoes an earlier one (and so cannot itself be
    /// compensated: when it keeps failing the saga is stuck).
    pub fn is_compensation(self) -> bool {
        matches!(
            self,
            Self::VoidPayment | Self::ReleaseStock | Self::RefundPayment
        )
    }
}

/// A saga as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// The order it drives.
    pub order_id: Uuid,
    /// Where it stands.
    pub state: SagaState,
    /// The step it waits for (kept while stuck; `None` once completed).
    pub step: Option<Step>,
    /// Sends of the current step so far.
    pub attempts: i32,
    /// Why it is compensating, once it is.
    pub cancel_reason: Option<String>,
}

/// What happened to a saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// catalog: StockReserved.
    StockReserved,
    /// catalog: StockRejected.
    StockRejected {
        /// Why.
        reason: String,
    },
    /// catalog: StockReleased.
    StockReleased,
    /// catalog: ReservationCommitted.
    ReservationCommitted,
    /// payments: PaymentAuthorized.
    PaymentAuthorized {
        /// The intent.
        payment_id: Uuid,
        /// What is held.
        amount: Money,
    },
    /// payments: PaymentDeclined.
    PaymentDeclined {
        /// Why, for people.
        reason: String,
    },
    /// payments: PaymentCaptured.
    PaymentCaptured {
        /// The intent.
        payment_id: Uuid,
        /// What was taken.
        amount: Money,
    },
    /// payments: PaymentVoided.
    PaymentVoided,
    /// payments: PaymentRefunded.
    PaymentRefunded,
    /// The customer or an admin asked to cancel.
    CancelRequested {
        /// Who.
        by: String,
        /// Why, when given.
        reason: Option<String>,
    },
    /// The current step's deadline passed without an answer.
    DeadlinePassed,
    /// An operator gave a stuck saga fresh attempts.
    OperatorRetry,
}

/// A fact for the order aggregate; the handler turns it into an event with
/// the order's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// Stock is held.
    StockReserved,
    /// Money is held.
    PaymentAuthorized {
        /// The intent.
        payment_id: Uuid,
        /// What.
        amount: Money,
    },
    /// Money is taken.
    PaymentCaptured {
        /// The intent.
        payment_id: Uuid,
        /// What.
        amount: Money,
    },
    /// Unwinding begins.
    CancellationRequested {
        /// Who asked (`saga` when the saga itself gives up).
        by: String,
        /// Why.
        reason: String,
    },
    /// Terminal: sold.
    Confirmed,
    /// Terminal: nothing held or charged.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// One line of the order's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The step (or `cancel`, `order`).
    pub step: &'static str,
    /// `started`, `succeeded`, `failed`, `retried`, `stuck`, `refused`, ...
    pub outcome: &'static str,
    /// Details.
    pub detail: Option<String>,
}

fn note(step: &'static str, outcome: &'static str, detail: Option<String>) -> Note {
    Note {
        step,
        outcome,
        detail,
    }
}

/// How the saga's pending step changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this step (first attempt) and wait for it.
    Send(Step),
    /// Send the current step again (its next attempt).
    Resend,
    /// Done: the order reached a terminal state.
    Complete,
    /// Park for an operator.
    Stick,
    /// Keep waiting for the current step (only notes or facts change).
    Stay,
}

/// What the saga does about one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Facts for the aggregate, in order.
    pub facts: Vec<Fact>,
    /// Timeline lines, in order.
    pub notes: Vec<Note>,
    /// The next pending step.
    pub next: Next,
    /// Set the compensation reason.
    pub cancel_reason: Option<String>,
    /// Why the last attempt failed, for operators.
    pub error: Option<String>,
}

impl Decision {
    fn new(next: Next) -> Self {
        Self {
            facts: vec![],
            notes: vec![],
            next,
            cancel_reason: None,
            error: None,
        }
    }

    fn fact(mut self, f: Fact) -> Self {
        self.facts.push(f);
        self
    }

    fn note(mut self, step: &'static str, outcome: &'static str, detail: Option<String>) -> Self {
        self.notes.push(note(step, outcome, detail));
        self
    }

    fn compensating(mut self, by: &str, reason: String) -> Self {
        self.facts.push(Fact::CancellationRequested {
            by: by.to_owned(),
            reason: reason.clone(),
        });
        self.cancel_reason = Some(reason);
        self
    }
}

impl Saga {
    /// The state whose rules apply: a stuck saga still takes the answer to
    /// the step it is stuck on.
    fn effective_state(&self) -> SagaState {
        match (self.state, self.step) {
            (SagaState::Stuck, Some(step)) => step.waiting_state(),
            (state, _) => state,
        }
    }

    fn reason(&self) -> String {
        self.cancel_reason
            .clone()
            .unwrap_or_else(|| "cancelled".into())
    }

    /// Decide what `input` means for this saga; `None` when it changes
    /// nothing (a duplicate, or an answer no longer waited for).
    pub fn decide(&self, input: &Input, max_attempts: i32) -> Option<Decision> {
        use Input as I;
        use SagaState as S;
        let stuck = self.state == S::Stuck;
        match (self.effective_state(), input) {
            (S::Completed, _) => None,
            (_, I::DeadlinePassed) if stuck => None,
            (_, I::OperatorRetry) if stuck => {
                let step = self.step?;
                Some(Decision::new(Next::Send(step)).note(
                    step.as_str(),
                    "retried",
                    Some("operator retry".into()),
                ))
            }
            (_, I::OperatorRetry) => None,
            (state, I::DeadlinePassed) => {
                let step = self.step?;
                debug_assert_eq!(step.waiting_state(), state);
                if self.attempts < max_attempts {
                    return Some(Decision::new(Next::Resend).note(
                        step.as_str(),
                        "retried",
                        Some(format!(
                            "no answer in time; attempt {} of {max_attempts}",
                            self.attempts + 1
                        )),
                    ));
                }
                let why = format!("no answer after {} attempts", self.attempts);
                let failed =
                    Decision::new(Next::Stay).note(step.as_str(), "failed", Some(why.clone()));
                let mut d = match step {
                    Step::ReserveStock => Decision {
                        next: Next::Send(Step::ReleaseStock),
                        ..failed
                    }
                    .compensating("saga", "stock reservation timed out".into()),
                    Step::AuthorizePayment => Decision {
                        next: Next::Send(Step::VoidPayment),
                        ..failed
                    }
                    .compensating("saga", "payment authorization timed out".into()),
                    Step::CapturePayment => Decision {
                        next: Next::Send(Step::VoidPayment),
                        ..failed
                    }
                    .compensating("saga", "payment capture failed".into()),
                    Step::CommitReservation => Decision {
                        next: Next::Send(Step::RefundPayment),
                        ..failed
                    }
                    .compensating("saga", "stock commit failed".into()),
                    Step::VoidPayment | Step::ReleaseStock | Step::RefundPayment => Decision {
                        next: Next::Stick,
                        ..failed
                    }
                    .note(
                        step.as_str(),
                        "stuck",
                        Some("compensation keeps failing; waiting for an operator".into()),
                    ),
                };
                d.error = Some(format!("{}: {why}", step.as_str()));
                Some(d)
            }

            (S::ReservingStock, I::StockReserved) => Some(
                Decision::new(Next::Send(Step::AuthorizePayment))
                    .fact(Fact::StockReserved)
                    .note("reserve_stock", "succeeded", None),
            ),
            (S::ReservingStock, I::StockRejected { reason }) => Some(
                Decision::new(Next::Complete)
                    .note("reserve_stock", "failed", Some(reason.clone()))
                    .fact(Fact::Cancelled {
                        reason: format!("stock unavailable: {reason}"),
                    })
                    .note("order", "cancelled", None),
            ),
            (S::ReservingStock, I::CancelRequested { by, reason }) => Some(
                Decision::new(Next::Send(Step::ReleaseStock))
                    .note("cancel", "requested", Some(by.clone()))
                    .compensating(
                        by,
                        reason
                            .clone()
                            .unwrap_or_else(|| "cancelled by request".into()),
                    ),
            ),

            (S::AuthorizingPayment, I::PaymentAuthorized { payment_id, amount }) => Some(
                Decision::new(Next::Send(Step::CapturePayment))
                    .fact(Fact::PaymentAuthorized {
                        payment_id: *payment_id,
                        amount: amount.clone(),
                    })
                    .note("authorize_payment", "succeeded", None),
            ),
            (S::AuthorizingPayment, I::PaymentDeclined { reason }) => Some(
                Decision::new(Next::Send(Step::ReleaseStock))
                    .note("authorize_payment", "failed", Some(reason.clone()))
                    .compensating("saga", format!("payment declined: {reason}")),
            ),
            (S::AuthorizingPayment, I::CancelRequested { by, reason }) => Some(
                Decision::new(Next::Send(Step::VoidPayment))
                    .note("cancel", "requested", Some(by.clone()))
                    .compensating(
                        by,
                        reason
                            .clone()
                            .unwrap_or_else(|| "cancelled by request".into()),
                    ),
            ),

            (S::CapturingPayment, I::PaymentCaptured { payment_id, amount }) => Some(
                Decision::new(Next::Send(Step::CommitReservation))
                    .fact(Fact::PaymentCaptured {
                        payment_id: *payment_id,
                        amount: amount.clone(),
                    })
                    .note("capture_payment", "succeeded", None),
            ),
            (S::CommittingStock, I::ReservationCommitted) => Some(
                Decision::new(Next::Complete)
                    .note("commit_reservation", "succeeded", None)
                    .fact(Fact::Confirmed)
                    .note("order", "confirmed", None),
            ),
            (S::CapturingPayment | S::CommittingStock, I::CancelRequested { by, .. }) => {
                Some(Decision::new(Next::Stay).note(
                    "cancel",
                    "refused",
                    Some(format!("asked by {by}, but capture has begun")),
                ))
            }

            (S::VoidingPayment, I::PaymentVoided) => {
                Some(Decision::new(Next::Send(Step::ReleaseStock)).note(
                    "void_payment",
                    "succeeded",
                    None,
                ))
            }
            (S::RefundingPayment, I::PaymentRefunded) => {
                Some(Decision::new(Next::Send(Step::ReleaseStock)).note(
                    "refund_payment",
                    "succeeded",
                    None,
                ))
            }
            (S::ReleasingStock, I::StockReleased) => Some(
                Decision::new(Next::Complete)
                    .note("release_stock", "succeeded", None)
                    .fact(Fact::Cancelled {
                        reason: self.reason(),
                    })
                    .note("order", "cancelled", None),
            ),
            // Already unwinding: a second cancel changes nothing.
            (
                S::VoidingPayment | S::ReleasingStock | S::RefundingPayment,
                I::CancelRequested { .. },
            ) => None,
            // Anything else is an answer nobody waits for any more (a late
            // or repeated one); compensation already covers its effect.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga(state: SagaState, step: Option<Step>, attempts: i32) -> Saga {
        Saga {
            order_id: Uuid::nil(),
            state,
            step,
            attempts,
            cancel_reason: None,
        }
    }

    fn waiting(step: Step) -> Saga {
        saga(step.waiting_state(), Some(step), 1)
    }

    fn eur() -> Money {
        Money {
            amount_minor: 100,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn the_happy_path_goes_step_by_step_to_confirmed() {
        let d = waiting(Step::ReserveStock)
            .decide(&Input::StockReserved, 3)
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::AuthorizePayment));
        assert_eq!(d.facts, vec![Fact::StockReserved]);
        let d = waiting(Step::AuthorizePayment)
            .decide(
                &Input::PaymentAuthorized {
                    payment_id: Uuid::nil(),
                    amount: eur(),
                },
                3,
            )
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::CapturePayment));
        let d = waiting(Step::CapturePayment)
            .decide(
                &Input::PaymentCaptured {
                    payment_id: Uuid::nil(),
                    amount: eur(),
                },
                3,
            )
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::CommitReservation));
        let d = waiting(Step::CommitReservation)
            .decide(&Input::ReservationCommitted, 3)
            .unwrap();
        assert_eq!(d.next, Next::Complete);
        assert_eq!(d.facts, vec![Fact::Confirmed]);
    }

    #[test]
    fn rejected_stock_cancels_and_a_decline_releases_first() {
        let d = waiting(Step::ReserveStock)
            .decide(
                &Input::StockRejected {
                    reason: "none left".into(),
                },
                3,
            )
            .unwrap();
        assert_eq!(d.next, Next::Complete);
        assert!(matches!(&d.facts[0], Fact::Cancelled { reason } if reason.contains("none left")));

        let d = waiting(Step::AuthorizePayment)
            .decide(
                &Input::PaymentDeclined {
                    reason: "card declined".into(),
                },
                3,
            )
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::ReleaseStock));
        assert_eq!(
            d.cancel_reason.as_deref(),
            Some("payment declined: card declined")
        );
        let mut releasing = waiting(Step::ReleaseStock);
        releasing.cancel_reason = d.cancel_reason;
        let d = releasing.decide(&Input::StockReleased, 3).unwrap();
        assert_eq!(d.next, Next::Complete);
        assert_eq!(
            d.facts,
            vec![Fact::Cancelled {
                reason: "payment declined: card declined".into()
            }]
        );
    }

    #[test]
    fn a_cancel_before_capture_voids_then_releases_and_after_is_refused() {
        let cancel = Input::CancelRequested {
            by: "user".into(),
            reason: None,
        };
        let d = waiting(Step::ReserveStock).decide(&cancel, 3).unwrap();
        assert_eq!(d.next, Next::Send(Step::ReleaseStock));
        let d = waiting(Step::AuthorizePayment).decide(&cancel, 3).unwrap();
        assert_eq!(d.next, Next::Send(Step::VoidPayment));
        let d = waiting(Step::VoidPayment)
            .decide(&Input::PaymentVoided, 3)
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::ReleaseStock));
        let d = waiting(Step::CapturePayment).decide(&cancel, 3).unwrap();
        assert_eq!(d.next, Next::Stay);
        assert!(d.facts.is_empty());
        assert_eq!(d.notes[0].outcome, "refused");
        assert!(waiting(Step::ReleaseStock).decide(&cancel, 3).is_none());
    }

    #[test]
    fn a_missed_deadline_retries_then_compensates_or_sticks() {
        let d = saga(SagaState::ReservingStock, Some(Step::ReserveStock), 2)
            .decide(&Input::DeadlinePassed, 3)
            .unwrap();
        assert_eq!(d.next, Next::Resend);
        let d = saga(SagaState::ReservingStock, Some(Step::ReserveStock), 3)
            .decide(&Input::DeadlinePassed, 3)
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::ReleaseStock));
        let d = saga(
            SagaState::AuthorizingPayment,
            Some(Step::AuthorizePayment),
            3,
        )
        .decide(&Input::DeadlinePassed, 3)
        .unwrap();
        assert_eq!(d.next, Next::Send(Step::VoidPayment));
        let d = saga(SagaState::CommittingStock, Some(Step::CommitReservation), 3)
            .decide(&Input::DeadlinePassed, 3)
            .unwrap();
        assert_eq!(d.next, Next::Send(Step::RefundPayment));
        for step in [Step::VoidPayment, Step::ReleaseStock, Step::RefundPayment] {
            let d = saga(step.waiting_state(), Some(step), 3)
                .decide(&Input::DeadlinePassed, 3)
                .unwrap();
            assert_eq!(d.next, Next::Stick, "{step:?}");
            assert!(d.error.is_some());
        }
    }

    #[test]
    fn a_stuck_saga_waits_for_an_operator_but_takes_a_late_answer() {
        let stuck = saga(SagaState::Stuck, Some(Step::ReleaseStock), 3);
        assert!(stuck.decide(&Input::DeadlinePassed, 3).is_none());
        let d = stuck.decide(&Input::OperatorRetry, 3).unwrap();
        assert_eq!(d.next, Next::Send(Step::ReleaseStock));
        let d = stuck.decide(&Input::StockReleased, 3).unwrap();
        assert_eq!(d.next, Next::Complete);
        assert!(
            waiting(Step::ReleaseStock)
                .decide(&Input::OperatorRetry, 3)
                .is_none()
        );
    }

    #[test]
    fn late_and_repeated_answers_change_nothing() {
        let done = saga(SagaState::Completed, None, 1);
        for input in [
            Input::StockReserved,
            Input::PaymentVoided,
            Input::DeadlinePassed,
            Input::ReservationCommitted,
        ] {
            assert!(done.decide(&input, 3).is_none());
        }
        assert!(
            waiting(Step::AuthorizePayment)
                .decide(&Input::StockReserved, 3)
                .is_none()
        );
        assert!(
            waiting(Step::VoidPayment)
                .decide(
                    &Input::PaymentAuthorized {
                        payment_id: Uuid::nil(),
                        amount: eur()
                    },
                    3
                )
                .is_none()
        );
    }

    #[test]
    fn names_round_trip() {
        for s in SagaState::ALL {
            assert_eq!(SagaState::parse(s.as_str()), Some(s));
        }
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
            assert!(s.waiting_state().is_waiting());
        }
    }
}
