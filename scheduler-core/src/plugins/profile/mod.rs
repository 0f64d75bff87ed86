//! Profile handlers and the prefill/decode deciders they consult.

pub mod disagg;
pub mod header;
pub mod legacy;
pub mod mm_decider;
pub mod pd_decider;
pub mod single;
