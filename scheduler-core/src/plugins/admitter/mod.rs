//! Admitters: may turn a request away before scheduling.

pub mod latency_slo;
pub mod probabilistic;
