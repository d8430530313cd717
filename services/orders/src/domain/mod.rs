//! The rules, free of I/O: the order aggregate ([`order`]), pricing a new
//! order from catalog products ([`pricing`]) and the saga's state machine
//! ([`saga`]).

pub mod order;
pub mod pricing;
pub mod saga;
