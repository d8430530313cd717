//! The NATS edges of the payments service: one command consumer (payments
//! serves no RPC; the saga learns everything from its events).

pub mod commands;
