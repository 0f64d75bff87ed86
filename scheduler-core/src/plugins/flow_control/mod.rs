//! Flow-control policies (GIE v1.5.0 / llm-d `framework/plugins/flowcontrol/`): ordering within a
//! flow, fairness between the flows of a priority band, and the usage limit each band dispatches
//! under. The flow-control layer that uses them is [`crate::flowcontrol`].

pub mod edf;
pub mod fcfs;
pub mod global_strict;
pub mod priority_holdback;
pub mod program_aware;
pub mod round_robin;
pub mod slo_deadline;
pub mod soft_reflective_ceiling;
pub mod static_usage_limit;
