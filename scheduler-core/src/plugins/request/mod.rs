//! Request-header processors (plugins that read the assembled request before admission) and
//! response reporters.

pub mod agent_identity;
pub mod attribute_reporter;
pub mod rollout_screener;
