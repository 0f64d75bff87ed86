//! Profile handlers and the prefill/decode deciders they consult.

pub mod disagg;
pub mod pd_decider;
pub mod single;
