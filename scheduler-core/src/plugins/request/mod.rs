//! Request-header processors: plugins that read the assembled request before admission.

pub mod agent_identity;
