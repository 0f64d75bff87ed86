//! `always-disagg-multimodal-decider` (llm-d): the encode-stage decider of
//! `disagg-profile-handler` — split an encode stage off whenever the request carries media
//! (image, audio or video content; [`crate::parse::media`]). llm-d reads this from the
//! tokenizer's multimodal features; this build reads the request's content parts. No
//! parameters.

use alloc::sync::Arc;

use crate::error::ConfigError;
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{CycleContext, PdDecider, Plugin, TypedName};
use crate::plugins::NoParams;

/// Plugin type name.
pub const TYPE: &str = "always-disagg-multimodal-decider";

/// Builds an [`AlwaysDisaggMultimodalDecider`].
///
/// # Errors
/// Any parameter field.
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    parse_params::<NoParams>(params)?;
    Ok(Arc::new(AlwaysDisaggMultimodalDecider {
        typed_name: TypedName::new(TYPE, name),
    }))
}

/// See the module docs.
pub struct AlwaysDisaggMultimodalDecider {
    typed_name: TypedName,
}

impl Plugin for AlwaysDisaggMultimodalDecider {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_pd_decider(&self) -> Option<&dyn PdDecider> {
        Some(self)
    }
}

impl PdDecider for AlwaysDisaggMultimodalDecider {
    fn disaggregate(&self, cx: &CycleContext<'_>, _: Option<usize>) -> bool {
        cx.request.multimodal
    }
}
