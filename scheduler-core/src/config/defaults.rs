//! GIE's defaults (`pkg/epp/config/loader/defaults.go` at GIE@1748e829, docs/SOURCES.md#gie-defaults).

/// Name of the profile created when none is configured.
pub const DEFAULT_PROFILE: &str = "default";

/// The built-in configuration used when the document has no plugins and no profiles:
/// queue-scorer (weight 2), kv-cache-utilization-scorer (2), prefix-cache-scorer (3) in one
/// `default` profile; the loader then adds max-score-picker, single-profile-handler,
/// openai-parser, utilization-detector and the metrics data layer.
pub const DEFAULT_CONFIG_JSON: &str = r#"{
  "plugins": [
    {"type": "queue-scorer"},
    {"type": "kv-cache-utilization-scorer"},
    {"type": "prefix-cache-scorer"}
  ],
  "schedulingProfiles": [
    {"name": "default", "plugins": [
      {"pluginRef": "queue-scorer", "weight": 2},
      {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
      {"pluginRef": "prefix-cache-scorer", "weight": 3}
    ]}
  ]
}"#;
