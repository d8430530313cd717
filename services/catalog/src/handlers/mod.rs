//! The catalog's NATS edges: the command consumer and the RPC endpoints.

pub mod commands;
pub mod rpc;
