//! Admitters: may turn a request away before scheduling.

pub mod probabilistic;
