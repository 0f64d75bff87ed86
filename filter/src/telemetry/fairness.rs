//! The `fairness_id` label values a writer keeps. A fairness id comes from a request header
//! (untrusted), and every value multiplies the series of every family it labels in Envoy's
//! stats, which a module cannot delete again; so a writer keeps the first
//! [`MAX_FAIRNESS_IDS`] ids it meets and counts every later one under [`OTHER_MODEL`]
//! (llm-d-router caps the same label at 1,000 values per process, and deletes an idle flow's
//! flow-control series; its request series it keeps).

use std::collections::HashSet;

use scheduler_core::flowcontrol::DEFAULT_FAIRNESS_ID;

use super::OTHER_MODEL;

/// Distinct fairness ids kept as `fairness_id` label values per writer, the default flow not
/// counted; requests of further flows count under [`OTHER_MODEL`].
pub const MAX_FAIRNESS_IDS: usize = 64;

/// See the module docs.
#[derive(Default)]
pub struct FairnessLabels(HashSet<String>);

impl FairnessLabels {
    /// The label value of the flow `fairness_id`: itself when it is the default flow, already
    /// kept, or there is room to keep it; else [`OTHER_MODEL`]. A kept id costs no allocation.
    pub fn label<'a>(&mut self, fairness_id: &'a str) -> &'a str {
        if fairness_id == DEFAULT_FAIRNESS_ID || self.0.contains(fairness_id) {
            return fairness_id;
        }
        if self.0.len() < MAX_FAIRNESS_IDS {
            self.0.insert(fairness_id.to_string());
            return fairness_id;
        }
        OTHER_MODEL
    }
}
