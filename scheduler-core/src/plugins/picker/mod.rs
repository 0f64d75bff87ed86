//! Pickers: choose the targets, primary first, then fallbacks.

pub mod common;
pub mod max_score;
pub mod random;
pub mod weighted_random;
