//! The crate's errors: configuration errors with a [`FieldPath`], request errors with their HTTP
//! status and OpenAI error type, metrics-text errors and registry errors.
//!
//! Display of a [`ConfigError`] reads `path: message`, in GIE's wording where GIE has a message
//! for the same problem (`pkg/epp/config/loader/validation.go` at GIE@1748e829). The status
//! mapping of [`RequestError`] follows GIE's `BuildErrResponse` (docs/SOURCES.md#gie-error-mapping) and lives only
//! here, so the filter, the CLI and the tests cannot disagree.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::plugin::Stability;

/// One step of a [`FieldPath`]: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    /// An object key, rendered as `.key` (or `key` at the start).
    Key(String),
    /// An array index, rendered as `[i]`.
    Index(usize),
}

/// Where in the JSON configuration a problem sits, e.g. `schedulingProfiles[0].plugins[2].pluginRef`.
///
/// Built in stages: a factory reports a path relative to its `parameters`, and the loader
/// prefixes `plugins[3].parameters`, so a nested problem still comes out with its full path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<PathSegment>);

impl FieldPath {
    /// The empty path (the document root).
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// A path of one key.
    pub fn key(k: &str) -> Self {
        FieldPath(alloc::vec![PathSegment::Key(k.into())])
    }

    /// This path followed by `.k`.
    #[must_use]
    pub fn with_key(mut self, k: &str) -> Self {
        self.0.push(PathSegment::Key(k.into()));
        self
    }

    /// This path followed by `[i]`.
    #[must_use]
    pub fn with_index(mut self, i: usize) -> Self {
        self.0.push(PathSegment::Index(i));
        self
    }

    /// `prefix` followed by this path.
    #[must_use]
    pub fn prefixed(self, prefix: &FieldPath) -> Self {
        let mut segs = prefix.0.clone();
        segs.extend(self.0);
        FieldPath(segs)
    }

    /// True for the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Converts a `serde_path_to_error` path (e.g. `matchExpressions[0].operator`).
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut out = FieldPath::root();
        for seg in path.iter() {
            match seg {
                Segment::Seq { index } => out.0.push(PathSegment::Index(*index)),
                Segment::Map { key } => out.0.push(PathSegment::Key(key.clone())),
                Segment::Enum { variant } => out.0.push(PathSegment::Key(variant.clone())),
                Segment::Unknown => {}
            }
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Key(k) if i == 0 => f.write_str(k)?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with a configuration; see [`ConfigError`] for where.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigErrorKind {
    /// The document (or a part of it) is not valid JSON, or a value has the wrong JSON type.
    InvalidJson(String),
    /// A field this schema does not know, with the closest known field when one is close.
    UnknownField {
        /// The field's name.
        name: String,
        /// A known field within a few edits of it.
        suggestion: Option<String>,
    },
    /// `plugins[i]` has no `type` (GIE: "plugin '`<n>`' is missing a type").
    MissingPluginType {
        /// The plugin's name, empty when it had none.
        name: String,
    },
    /// Two plugins share a name (GIE: "duplicate plugin name '`<n>`'").
    DuplicatePluginName(String),
    /// No registry entry for this type (GIE: "plugin type '`<t>`' is not registered"), with the
    /// closest registered type name when one is close (a typo).
    UnknownPluginType {
        /// The type the config named.
        type_name: String,
        /// A registered type within a few edits of it.
        suggestion: Option<String>,
    },
    /// The type was removed; the text says what replaces it.
    RemovedPluginType {
        /// The removed type name.
        type_name: String,
        /// Migration guidance from the tombstone.
        migration: String,
    },
    /// An upstream type this engine does not build; the text says why.
    NotBuiltPluginType {
        /// The type the config named.
        type_name: String,
        /// Why it is missing.
        reason: String,
    },
    /// An Alpha plugin whose feature gate is not enabled.
    AlphaPluginNotEnabled {
        /// The plugin type.
        type_name: String,
        /// The gate that enables it.
        gate: String,
    },
    /// A Beta plugin whose gate was turned off (`"<gate>=false"`).
    PluginDisabledByGate {
        /// The plugin type.
        type_name: String,
        /// The gate that was turned off.
        gate: String,
    },
    /// The plugin's stability is below the configured `minStability`.
    BelowMinimumStability {
        /// The plugin type.
        type_name: String,
        /// Its stability.
        stability: Stability,
        /// The configured minimum.
        minimum: Stability,
    },
    /// A factory rejected its parameters (GIE: "failed to create plugin '`<n>`' (type: `<t>`): …").
    InvalidParameter {
        /// The plugin's name.
        name: String,
        /// The plugin's type.
        type_name: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter value is out of range or inconsistent (path points at it).
    InvalidValue(String),
    /// `schedulingProfiles[i]` has no name.
    MissingProfileName(usize),
    /// Two profiles share a name.
    DuplicateProfileName(String),
    /// A profile plugin entry has no `pluginRef`.
    MissingPluginRef,
    /// A reference names no configured plugin.
    UndefinedPluginRef(String),
    /// A reference names a plugin of the wrong kind (e.g. a scorer as parser).
    WrongPluginKind {
        /// The referenced plugin name.
        name: String,
        /// What the reference needed.
        expected: &'static str,
    },
    /// A feature gate nobody registered.
    UnknownFeatureGate(String),
    /// A second picker in one profile.
    MultiplePickers {
        /// The profile name.
        profile: String,
    },
    /// More than one profile handler among the plugins.
    MultipleProfileHandlers,
    /// Several profiles and no profile handler.
    NoProfileHandler,
    /// `single-profile-handler` with more than one profile.
    SingleProfileHandlerMultipleProfiles,
    /// Data producers depend on each other in a cycle.
    DataDependencyCycle(String),
    /// A recognised GIE feature this picker does not implement.
    Unsupported(String),
}

/// A configuration problem and the field it is at. Display: `path: message`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// Where the problem is.
    pub path: FieldPath,
    /// What the problem is.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: FieldPath, kind: ConfigErrorKind) -> Self {
        ConfigError { path, kind }
    }

    /// An [`ConfigErrorKind::InvalidValue`] at `path`.
    pub fn invalid(path: FieldPath, message: impl Into<String>) -> Self {
        ConfigError::new(path, ConfigErrorKind::InvalidValue(message.into()))
    }

    /// The same error with `prefix` put in front of its path.
    #[must_use]
    pub fn prefixed(mut self, prefix: &FieldPath) -> Self {
        self.path = core::mem::take(&mut self.path).prefixed(prefix);
        self
    }

    /// Turns a `serde_path_to_error` failure into a config error with the field path; for an
    /// unknown field the path ends with that field's name.
    pub fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let mut path = FieldPath::from_serde(err.path());
        let msg = alloc::format!("{}", err.inner());
        // serde_json renders "unknown field `x`, expected one of ... at line 1 column 9".
        let msg = strip_position(&msg);
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            if let Some(end) = rest.find('`') {
                let field = rest.get(..end).unwrap_or(rest);
                if path.0.last() != Some(&PathSegment::Key(field.into())) {
                    path.0.push(PathSegment::Key(field.into()));
                }
                // "..., expected one of `a`, `b`" / "expected `a` or `b`": the known fields.
                let known = rest
                    .split_once("expected")
                    .map(|(_, list)| list)
                    .unwrap_or("")
                    .split('`')
                    .skip(1)
                    .step_by(2);
                let suggestion = crate::suggest::closest(field, known).map(String::from);
                return ConfigError::new(
                    path,
                    ConfigErrorKind::UnknownField {
                        name: field.into(),
                        suggestion,
                    },
                );
            }
        }
        ConfigError::new(path, ConfigErrorKind::InvalidJson(msg.into()))
    }
}

/// Drops serde_json's " at line L column C" suffix: the field path says where.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg),
        None => msg,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            K::InvalidJson(m) => write!(f, "invalid JSON: {m}"),
            K::UnknownField { name, suggestion } => {
                write!(f, "unknown field '{name}'")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean '{s}'?"),
                    None => Ok(()),
                }
            }
            K::MissingPluginType { name } => write!(f, "plugin '{name}' is missing a type"),
            K::DuplicatePluginName(n) => write!(f, "duplicate plugin name '{n}'"),
            K::UnknownPluginType {
                type_name,
                suggestion,
            } => {
                write!(f, "plugin type '{type_name}' is not registered")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean '{s}'?"),
                    None => Ok(()),
                }
            }
            K::RemovedPluginType { type_name, migration } => {
                write!(f, "plugin type '{type_name}' has been removed: {migration}")
            }
            K::NotBuiltPluginType { type_name, reason } => write!(
                f,
                "plugin type '{type_name}' is registered upstream but not built in this engine: {reason}"
            ),
            K::AlphaPluginNotEnabled { type_name, gate } => write!(
                f,
                "plugin type '{type_name}' is Alpha and needs the feature gate '{gate}' in featureGates"
            ),
            K::PluginDisabledByGate { type_name, gate } => {
                write!(f, "plugin type '{type_name}' is disabled by feature gate '{gate}=false'")
            }
            K::BelowMinimumStability { type_name, stability, minimum } => write!(
                f,
                "plugin type '{type_name}' is {stability}, below the configured minStability {minimum}"
            ),
            K::InvalidParameter { name, type_name, message } => {
                write!(f, "failed to create plugin '{name}' (type: {type_name}): {message}")
            }
            K::InvalidValue(m) => f.write_str(m),
            K::MissingProfileName(i) => write!(f, "schedulingProfiles[{i}] is missing a name"),
            K::DuplicateProfileName(n) => write!(f, "duplicate profile name '{n}'"),
            K::MissingPluginRef => f.write_str("missing a 'pluginRef'"),
            K::UndefinedPluginRef(n) => write!(f, "undefined plugin '{n}'"),
            K::WrongPluginKind { name, expected } => {
                write!(f, "plugin '{name}' is not {expected}")
            }
            K::UnknownFeatureGate(g) => write!(f, "unknown feature gate '{g}'"),
            K::MultiplePickers { profile } => {
                write!(f, "profile '{profile}' already has a picker; a profile takes one picker")
            }
            K::MultipleProfileHandlers => f.write_str("multiple profile handlers found"),
            K::NoProfileHandler => {
                f.write_str("no profile handler configured (several profiles need one)")
            }
            K::SingleProfileHandlerMultipleProfiles => {
                f.write_str("SingleProfileHandler cannot support multiple scheduling profiles")
            }
            K::DataDependencyCycle(m) => write!(f, "data dependency cycle: {m}"),
            K::Unsupported(m) => write!(f, "not supported: {m}"),
        }
    }
}

/// A request the picker refuses or cannot place. Each variant knows its HTTP status
/// ([`RequestError::status`]) and OpenAI error type ([`RequestError::error_type`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The body is not valid JSON (400). Carries the decoder's message.
    InvalidJson(String),
    /// The body is JSON but not an object (400).
    NotAnObject,
    /// No `model` field, or not a non-empty string (400; GIE: "model not found in request body").
    MissingModel,
    /// The field holding the prompt for this API is missing or empty (400).
    MissingPrompt(&'static str),
    /// A field has the wrong type or value (400).
    InvalidField(String),
    /// The body is larger than the configured limit, in bytes (413).
    BodyTooLarge(usize),
    /// No candidate endpoints at all (503; GIE: "failed to find endpoint candidates").
    NoCandidates,
    /// Every candidate was filtered out, or a profile failed (429; GIE: "failed to find target endpoint").
    NoTargetEndpoint(String),
    /// A sheddable request (priority < 0) while the pool is saturated (429).
    Saturated,
    /// An admitter plugin denied the request (500 as in GIE). Carries the plugin's reason.
    AdmissionDenied(String),
    /// An admitter shed the request for load (429, upstream's `ResourceExhausted`). Carries the
    /// plugin's reason.
    Shed(String),
    /// No usable metrics snapshot and the failure mode is FailClose (503).
    NoSnapshot,
    /// Taking this body would put the request bodies being buffered by this proxy worker over
    /// `pool.maxBufferedBodyBytes`, carried in bytes (503).
    BufferFull(usize),
    /// Flow control: the request's priority band, or all bands together, already hold their
    /// `maxRequests` / `maxBytes` (429; upstream's `ErrQueueAtCapacity`).
    QueueFull,
    /// Flow control: the request waited its whole queue-wait budget (`defaultRequestTTL`) while
    /// the pool stayed saturated (429; upstream's `ErrTTLExpired`).
    QueueTimeout,
    /// Flow control with `enableEviction`: this sheddable request, already sent to a model
    /// server, was cut short for higher-priority requests waiting on a saturated pool (429, as
    /// llm-d-router answers it).
    Evicted,
    /// The request carries `Prefer: if-available` (a speculative early decode) and the endpoint
    /// chosen holds none of its prompt's prefix (412, llm-d-router's `PreconditionFailed`: the
    /// caller runs the full pipeline instead).
    PreconditionFailed,
}

impl RequestError {
    /// The HTTP status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::InvalidJson(_)
            | RequestError::NotAnObject
            | RequestError::MissingModel
            | RequestError::MissingPrompt(_)
            | RequestError::InvalidField(_) => 400,
            RequestError::BodyTooLarge(_) => 413,
            RequestError::PreconditionFailed => 412,
            RequestError::NoTargetEndpoint(_)
            | RequestError::Saturated
            | RequestError::Shed(_)
            | RequestError::QueueFull
            | RequestError::QueueTimeout
            | RequestError::Evicted => 429,
            RequestError::AdmissionDenied(_) => 500,
            RequestError::NoCandidates | RequestError::NoSnapshot | RequestError::BufferFull(_) => {
                503
            }
        }
    }

    /// The OpenAI-style `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self.status() {
            400 | 413 => "invalid_request_error",
            412 => "precondition_failed",
            429 => "rate_limit_exceeded",
            500 => "server_error",
            _ => "service_unavailable",
        }
    }

    /// A stable machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::NotAnObject => "invalid_body",
            RequestError::MissingModel => "model_not_found_in_body",
            RequestError::MissingPrompt(_) => "missing_prompt",
            RequestError::InvalidField(_) => "invalid_field",
            RequestError::BodyTooLarge(_) => "request_too_large",
            RequestError::NoCandidates => "no_endpoint_candidates",
            RequestError::NoTargetEndpoint(_) => "no_target_endpoint",
            RequestError::Saturated => "pool_saturated",
            RequestError::Shed(_) => "request_shed",
            RequestError::AdmissionDenied(_) => "admission_denied",
            RequestError::NoSnapshot => "no_metrics_snapshot",
            RequestError::BufferFull(_) => "body_buffer_full",
            RequestError::QueueFull => "queue_full",
            RequestError::QueueTimeout => "queue_timeout",
            RequestError::Evicted => "evicted",
            RequestError::PreconditionFailed => "no_cached_prefix",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::InvalidJson(m) => write!(f, "error unmarshaling request body: {m}"),
            RequestError::NotAnObject => f.write_str("request body must be a JSON object"),
            RequestError::MissingModel => f.write_str("model not found in request body"),
            RequestError::MissingPrompt(field) => {
                write!(f, "'{field}' is required in the request body")
            }
            RequestError::InvalidField(m) => f.write_str(m),
            RequestError::BodyTooLarge(limit) => {
                write!(f, "request body exceeds the limit of {limit} bytes")
            }
            RequestError::NoCandidates => f.write_str("failed to find endpoint candidates"),
            RequestError::NoTargetEndpoint(why) => {
                write!(f, "failed to find target endpoint: {why}")
            }
            RequestError::Saturated => f.write_str("system saturated, sheddable request dropped"),
            RequestError::Shed(why) => write!(f, "request shed under load: {why}"),
            RequestError::AdmissionDenied(why) => write!(f, "request cannot be admitted: {why}"),
            RequestError::NoSnapshot => {
                f.write_str("no endpoint metrics available yet (failure mode FailClose)")
            }
            RequestError::BufferFull(limit) => write!(
                f,
                "the gateway is already buffering {limit} bytes of request bodies; retry later"
            ),
            RequestError::QueueFull => {
                f.write_str("flow control: the request's queue is at capacity; retry later")
            }
            RequestError::QueueTimeout => f.write_str(
                "flow control: the pool stayed saturated for the request's whole queue-wait budget; retry later",
            ),
            RequestError::Evicted => f.write_str(
                "request evicted by flow control: higher-priority requests needed its capacity",
            ),
            RequestError::PreconditionFailed => f.write_str(
                "Prefer: if-available: the chosen endpoint holds none of the prompt's prefix cache",
            ),
        }
    }
}

/// A `/metrics` page that is not Prometheus text format 0.0.4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsParseError {
    /// 1-based line number of the offending line.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for MetricsParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics text line {}: {}", self.line, self.reason)
    }
}

/// A registry table problem (programmer error in a plugin crate), returned, never panicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryError {
    /// Two entries for one type name.
    DuplicateType(String),
    /// An Alpha entry without a feature gate.
    AlphaWithoutGate(String),
    /// An empty type name.
    EmptyTypeName,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::DuplicateType(t) => write!(f, "plugin type '{t}' is registered twice"),
            RegistryError::AlphaWithoutGate(t) => {
                write!(f, "Alpha plugin type '{t}' must name a feature gate")
            }
            RegistryError::EmptyTypeName => f.write_str("plugin type name must not be empty"),
        }
    }
}

/// The crate's one public error enum, wrapping each family.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// See [`ConfigError`].
    Config(ConfigError),
    /// See [`RequestError`].
    Request(RequestError),
    /// See [`MetricsParseError`].
    Metrics(MetricsParseError),
    /// See [`RegistryError`].
    Registry(RegistryError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Request(e) => e.fmt(f),
            Error::Metrics(e) => e.fmt(f),
            Error::Registry(e) => e.fmt(f),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Error::Request(e)
    }
}
impl From<MetricsParseError> for Error {
    fn from(e: MetricsParseError) -> Self {
        Error::Metrics(e)
    }
}
impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(e)
    }
}

impl core::error::Error for Error {}
impl core::error::Error for ConfigError {}
impl core::error::Error for RequestError {}
impl core::error::Error for MetricsParseError {}
impl core::error::Error for RegistryError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn field_path_renders_keys_and_indices() {
        let p = FieldPath::key("schedulingProfiles")
            .with_index(0)
            .with_key("plugins")
            .with_index(2)
            .with_key("pluginRef");
        assert_eq!(p.to_string(), "schedulingProfiles[0].plugins[2].pluginRef");
    }

    #[test]
    fn request_error_status_mapping_matches_gie() {
        assert_eq!(RequestError::MissingModel.status(), 400);
        assert_eq!(RequestError::BodyTooLarge(10).status(), 413);
        assert_eq!(RequestError::Saturated.status(), 429);
        assert_eq!(RequestError::NoTargetEndpoint("x".into()).status(), 429);
        assert_eq!(RequestError::NoCandidates.status(), 503);
        assert_eq!(RequestError::AdmissionDenied("x".into()).status(), 500);
        assert_eq!(
            RequestError::MissingModel.to_string(),
            "model not found in request body"
        );
    }
}
