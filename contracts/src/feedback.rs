//! The feedback context's messages: polls and their questions, the
//! invitations it issues after an order, the answers customers give, the
//! results it computes, and the one fact it publishes
//! ([`ResponseRecorded`]).
//!
//! Polls are versioned: a response names the version it answered, so the
//! questions it refers to never change under it. Errors of the RPCs are the
//! common [`crate::RpcError`]; what a gateway needs beyond the code is in
//! its `details` ([`error_reason`]).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{catalog::Money, message::wire, subjects::feedback as subj};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id (UUIDv7, time-ordered).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A poll (all its versions).
    PollId
);
uuid_id!(
    /// One invitation of one customer, after one order, to one poll.
    InvitationId
);
uuid_id!(
    /// One recorded response (one per invitation).
    ResponseId
);

/// Machine-readable reasons in an [`crate::RpcError`]'s `details.reason`,
/// so a gateway can pick the HTTP status the code alone does not say.
pub mod error_reason {
    /// The token's signature does not verify or it is malformed (401).
    pub const TOKEN_INVALID: &str = "token_invalid";
    /// The token's expiry has passed (410).
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The invitation was answered already (410 for a token; the
    /// submission itself is a 409 `already_answered`).
    pub const TOKEN_USED: &str = "token_used";
    /// A second answer to one invitation (409); nothing changed.
    pub const ALREADY_ANSWERED: &str = "already_answered";
    /// An answer does not fit its question (422); `details.question` names it.
    pub const INVALID_ANSWER: &str = "invalid_answer";
    /// A poll definition breaks a rule (422); `details.field` names where.
    pub const INVALID_POLL: &str = "invalid_poll";
    /// The poll's state does not allow this (409: editing a closed poll,
    /// answering a closed one).
    pub const POLL_STATE: &str = "poll_state";
    /// The customer has no open invitation to this poll (404).
    pub const NOT_INVITED: &str = "not_invited";
}

/// What kind of answer a question takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QuestionKind {
    /// Exactly one of the options.
    SingleChoice {
        /// The options, as shown and as answered.
        options: Vec<String>,
    },
    /// Any number of the options (at least one when the question is required).
    MultipleChoice {
        /// The options, as shown and as answered.
        options: Vec<String>,
    },
    /// A score from 1 to 5.
    Rating,
    /// Net Promoter Score: 0 (not at all likely) to 10 (extremely likely).
    Nps,
    /// Free text of at most `max_length` characters.
    FreeText {
        /// Most characters accepted (1..=[`MAX_FREE_TEXT`]).
        max_length: u32,
    },
}

/// One question of a poll version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Question {
    /// Stable key within the poll (`nps`, `comment`): lower-case letters,
    /// digits, `-` and `_`; answers and CSV columns refer to it.
    pub id: String,
    /// The question as shown.
    pub prompt: String,
    /// What it takes.
    pub kind: QuestionKind,
    /// Whether an answer set must answer it.
    #[serde(default)]
    pub required: bool,
}

/// One answer as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnswerValue {
    /// For a single-choice question.
    Choice {
        /// The option chosen.
        option: String,
    },
    /// For a multiple-choice question.
    Choices {
        /// The options chosen.
        options: Vec<String>,
    },
    /// For a rating (1-5) or NPS (0-10) question.
    Score {
        /// The score.
        score: i64,
    },
    /// For a free-text question.
    Text {
        /// The text.
        text: String,
    },
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Answer {
    /// The question's id.
    pub question: String,
    /// The answer.
    pub value: AnswerValue,
}

/// Which order outcome invites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `orders.events.confirmed`.
    OrderConfirmed,
    /// `orders.events.cancelled`.
    OrderCancelled,
}

/// Who is invited to a poll, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetRule {
    /// The order outcome that invites.
    pub trigger: Trigger,
    /// Only cancellations whose reason starts with this (`payment declined`,
    /// `stock unavailable`); only with [`Trigger::OrderCancelled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// Only the customer's first order (the first the feedback service saw).
    #[serde(default)]
    pub first_order_only: bool,
    /// Percentage of matching orders invited, 0..=100, decided from the
    /// order id so a redelivered event decides the same.
    pub sample_percent: u32,
    /// At most one invitation to this poll per customer within this many
    /// days (0: no limit).
    #[serde(default)]
    pub cooldown_days: u32,
    /// Seconds between the order outcome and the email.
    #[serde(default)]
    pub delay_secs: u64,
}

/// Where a poll stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PollState {
    /// Being written; invites nobody.
    Draft,
    /// Inviting and taking answers.
    Published,
    /// Invites nobody and takes no more answers; results stay.
    Closed,
}

impl PollState {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Closed => "closed",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Published, Self::Closed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A poll as the feedback service serves it: its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PollView {
    /// The poll.
    pub id: PollId,
    /// Where it stands.
    pub state: PollState,
    /// The current version (1, 2, ...); responses name theirs.
    pub version: u32,
    /// Title (the invitation email's subject line).
    pub title: String,
    /// The current version's questions.
    pub questions: Vec<Question>,
    /// Who is invited.
    pub rule: TargetRule,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// RPC: create a draft poll (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoll {
    /// Title.
    pub title: String,
    /// 1..=[`MAX_QUESTIONS`] questions.
    pub questions: Vec<Question>,
    /// Who is invited.
    pub rule: TargetRule,
}

/// RPC: replace a poll's title, questions and rule. A draft is changed in
/// place; a published poll gets a new version (earlier responses keep
/// theirs); a closed poll is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditPoll {
    /// The poll.
    pub poll_id: PollId,
    /// Refuse (409) unless the current version is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u32>,
    /// Title.
    pub title: String,
    /// 1..=[`MAX_QUESTIONS`] questions.
    pub questions: Vec<Question>,
    /// Who is invited.
    pub rule: TargetRule,
}

/// RPC: publish a draft (idempotent on a published poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PublishPoll {
    /// The poll.
    pub poll_id: PollId,
}

/// RPC: close a poll (idempotent on a closed poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClosePoll {
    /// The poll.
    pub poll_id: PollId,
}

/// RPC: fetch a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetPoll {
    /// The poll.
    pub poll_id: PollId,
}

/// RPC: every poll, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListPolls {
    /// Only polls in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PollState>,
}

/// RPC reply: polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PollList {
    /// The polls.
    pub items: Vec<PollView>,
}

/// RPC: the poll an invitation link asks about (no login: the token is the
/// credential). Refused when the token is forged, expired or used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetInvitation {
    /// The link's token.
    pub token: String,
}

/// RPC reply: what to show for an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvitationView {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// The poll.
    pub poll_id: PollId,
    /// The version to answer (the poll's current one).
    pub version: u32,
    /// Title.
    pub title: String,
    /// The questions to answer.
    pub questions: Vec<Question>,
    /// The order it is about.
    pub order_id: Uuid,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// RPC: answer with an invitation link's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitByToken {
    /// The link's token.
    pub token: String,
    /// One answer per question answered.
    pub answers: Vec<Answer>,
}

/// RPC: answer as a signed-in customer (the gateway checked who they are):
/// their most recent open invitation to the poll is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitByCustomer {
    /// The poll.
    pub poll_id: PollId,
    /// The customer (from their access token).
    pub customer_id: Uuid,
    /// One answer per question answered.
    pub answers: Vec<Answer>,
}

/// RPC reply: the response recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseReceipt {
    /// The response.
    pub response_id: ResponseId,
    /// The invitation it answered.
    pub invitation_id: InvitationId,
    /// The poll.
    pub poll_id: PollId,
    /// The version answered.
    pub poll_version: u32,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

/// What the system knew about an order when its customer answered, folded
/// from the orders events the feedback service consumed. A figure no event
/// tells is absent, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderSnapshot {
    /// What the order came to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    /// Number of lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    /// Units over all lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<i64>,
    /// When it was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<DateTime<Utc>>,
    /// When it was confirmed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_at: Option<DateTime<Utc>>,
    /// `confirmed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Milliseconds from placed to final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Saga step retries. No orders event tells them today (the order's
    /// timeline does, over RPC), so this stays absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_retries: Option<u32>,
    /// Holds undone before the order ended: a stock reservation released,
    /// a payment authorization voided (seen as reserved or authorized and
    /// then cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensations: Option<u32>,
    /// Payment declines, as the cancel reason tells (`payment declined: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_declines: Option<u32>,
    /// Why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

/// Event: a customer answered a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseRecorded {
    /// The response.
    pub response_id: ResponseId,
    /// The poll.
    pub poll_id: PollId,
    /// The version answered.
    pub poll_version: u32,
    /// The invitation answered.
    pub invitation_id: InvitationId,
    /// Who answered.
    pub customer_id: Uuid,
    /// The order the invitation followed.
    pub order_id: Uuid,
    /// The answers.
    pub answers: Vec<Answer>,
    /// What the system knew about the order.
    pub snapshot: OrderSnapshot,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

/// RPC: a poll's results, over all versions or one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetResults {
    /// The poll.
    pub poll_id: PollId,
    /// Only responses to this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// How often one option was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OptionCount {
    /// The option (or the score, as text).
    pub option: String,
    /// Responses that chose it.
    pub count: u64,
}

/// One question's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuestionResult {
    /// The question's id.
    pub question: String,
    /// Responses that answered it.
    pub answered: u64,
    /// Counts per option or score (empty for free text).
    pub counts: Vec<OptionCount>,
    /// Mean score (rating and NPS questions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<f64>,
    /// NPS: % promoters (9-10) minus % detractors (0-6), -100..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<f64>,
}

/// Results of the responses that share one value of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Segment {
    /// The value (`<1s`, `1-10s`, `yes`, `payment declined`, `unknown`).
    pub key: String,
    /// Responses in it.
    pub responses: u64,
    /// NPS of its answers to the poll's first NPS question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<f64>,
    /// Mean of its answers to the poll's first rating question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating_average: Option<f64>,
}

/// RPC reply: a poll's results joined with what the system measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PollResults {
    /// The poll.
    pub poll_id: PollId,
    /// The version the results are restricted to, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Invitations issued.
    pub invitations: u64,
    /// Responses recorded.
    pub responses: u64,
    /// `responses / invitations` (0 without invitations).
    pub response_rate: f64,
    /// Per question (of the current version, or of `version`).
    pub questions: Vec<QuestionResult>,
    /// By time from placed to final: `<1s`, `1-10s`, `10-60s`, `>60s`, `unknown`.
    pub by_latency: Vec<Segment>,
    /// By whether a saga retry or a compensation happened: `yes`, `no`.
    pub by_retry_or_compensation: Vec<Segment>,
    /// By cancel reason (`none` for confirmed orders).
    pub by_cancel_reason: Vec<Segment>,
}

/// RPC: every response of a poll as CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportResponses {
    /// The poll.
    pub poll_id: PollId,
}

/// RPC reply: the CSV (RFC 4180, header row, one row per response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResponsesCsv {
    /// The poll.
    pub poll_id: PollId,
    /// Data rows.
    pub rows: u64,
    /// The document.
    pub csv: String,
}

wire!(PollView, "feedback.poll");
wire!(CreatePoll, "feedback.create-poll", rpc subj::RPC_POLL_CREATE => PollView);
wire!(EditPoll, "feedback.edit-poll", rpc subj::RPC_POLL_EDIT => PollView);
wire!(PublishPoll, "feedback.publish-poll", rpc subj::RPC_POLL_PUBLISH => PollView);
wire!(ClosePoll, "feedback.close-poll", rpc subj::RPC_POLL_CLOSE => PollView);
wire!(GetPoll, "feedback.get-poll", rpc subj::RPC_POLL_GET => PollView);
wire!(PollList, "feedback.poll-list");
wire!(ListPolls, "feedback.list-polls", rpc subj::RPC_POLL_LIST => PollList);
wire!(InvitationView, "feedback.invitation");
wire!(GetInvitation, "feedback.get-invitation", rpc subj::RPC_INVITATION_GET => InvitationView);
wire!(ResponseReceipt, "feedback.response-receipt");
wire!(SubmitByToken, "feedback.submit-by-token", rpc subj::RPC_RESPONSE_SUBMIT_TOKEN => ResponseReceipt);
wire!(SubmitByCustomer, "feedback.submit-by-customer", rpc subj::RPC_RESPONSE_SUBMIT_CUSTOMER => ResponseReceipt);
wire!(ResponseRecorded, "feedback.response-recorded", event subj::RESPONSE_RECORDED);
wire!(PollResults, "feedback.poll-results");
wire!(GetResults, "feedback.get-results", rpc subj::RPC_RESULTS_GET => PollResults);
wire!(ResponsesCsv, "feedback.responses-csv");
wire!(ExportResponses, "feedback.export-responses", rpc subj::RPC_RESULTS_EXPORT => ResponsesCsv);

/// Most questions a poll version may have.
pub const MAX_QUESTIONS: usize = 20;
/// Most options a choice question may have.
pub const MAX_OPTIONS: usize = 20;
/// Longest free-text limit a question may set.
pub const MAX_FREE_TEXT: u32 = 4000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Encoding;

    #[test]
    fn answers_and_questions_round_trip_in_both_encodings() {
        let q = Question {
            id: "nps".into(),
            prompt: "How likely?".into(),
            kind: QuestionKind::Nps,
            required: true,
        };
        let a = Answer {
            question: "nps".into(),
            value: AnswerValue::Score { score: 9 },
        };
        for enc in [Encoding::Json, Encoding::MsgPack] {
            let q2: Question = enc.decode(&enc.encode(&q).unwrap()).unwrap();
            assert_eq!(q2, q);
            let a2: Answer = enc.decode(&enc.encode(&a).unwrap()).unwrap();
            assert_eq!(a2, a);
        }
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"question": "nps", "value": {"type": "score", "score": 9}})
        );
    }

    #[test]
    fn ids_are_plain_uuids_on_the_wire() {
        let id = PollId::new();
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::json!(id.0.to_string())
        );
        assert_eq!(id.to_string().parse::<PollId>().unwrap(), id);
    }
}
