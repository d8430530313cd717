//! The benchmark harness's library: the customers' side of the shop over
//! REST, shared by the load generators and the fault suite.

pub mod shop;
