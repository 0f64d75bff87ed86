//! `libendpoint_picker.so`: the native module with the in-tree plugins. Every hook is in the
//! `endpoint-picker-native` crate; this crate only adds the entry point.

endpoint_picker_native::module!(scheduler_core::Registry::with_builtins);
