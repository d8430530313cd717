//! The NATS edges of the orders service: its commands, the catalog's and
//! payments' answers to the saga, the deadline scan and the RPC reads.

pub mod commands;
pub mod deadlines;
pub mod rpc;
pub mod saga_events;
