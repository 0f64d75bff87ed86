//! Parameters shared by every picker (GIE `picker/common.go`).

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};

/// Shared picker parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PickerParams {
    /// How many endpoints to return: the primary plus `n − 1` ordered fallbacks. Default 1.
    pub max_num_of_endpoints: i64,
}

impl Default for PickerParams {
    fn default() -> Self {
        PickerParams {
            max_num_of_endpoints: 1,
        }
    }
}

impl PickerParams {
    /// The validated count. Unlike GIE, a value ≤ 0 is an error rather than silently 1.
    ///
    /// # Errors
    /// `maxNumOfEndpoints` < 1.
    pub fn count(&self) -> Result<usize, ConfigError> {
        usize::try_from(self.max_num_of_endpoints)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| ConfigError::invalid(FieldPath::key("maxNumOfEndpoints"), "must be ≥ 1"))
    }
}
