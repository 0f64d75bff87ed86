//! The gRPC request parsers (vLLM's `Generate`/`Embed`, Vertex AI's prediction methods) on
//! arbitrary bodies, then a scheduling cycle on what they accepted; and the streamed usage
//! reader of vLLM gRPC responses fed the same bytes split at an arbitrary point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scheduler_core::parse::vllm_grpc::{GrpcUsageReader, Method};
use scheduler_core::{load, Endpoint, Registry, RequestState, SplitMix64};

const CONFIG: &str = r#"{"plugins": [{"type": "vllmgrpc-parser"}, {"type": "vertexai-parser"},
  {"type": "prefix-cache-scorer"}, {"type": "max-score-picker"}],
  "requestHandler": {"parsers": [{"pluginRef": "vllmgrpc-parser"}, {"pluginRef": "vertexai-parser"}]},
  "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let paths = [
        "/vllm.grpc.engine.VllmEngine/Generate",
        "/vllm.grpc.engine.VllmEngine/Embed",
        "/google.cloud.aiplatform.v1.PredictionService/ChatCompletions",
        "/google.cloud.aiplatform.v1.PredictionService/RawPredict",
    ];
    let first = data.first().map_or(0, |b| *b as usize);
    let path = paths[first % paths.len()];
    let Ok((picker, _)) = load(CONFIG, &Registry::with_builtins()) else { return };
    if let Ok(req) = picker.parse_request(path, data, vec![]) {
        let pool = vec![Endpoint::new("10.0.0.1:8000"), Endpoint::new("10.0.0.2:8000")];
        let _ = picker.schedule(&req, &pool, 1, &mut SplitMix64::new(1), &mut RequestState::new());
    }
    let method = if first & 1 == 0 { Method::Generate } else { Method::Embed };
    let (a, b) = data.split_at(first % (data.len() + 1));
    let mut reader = GrpcUsageReader::new(method);
    reader.feed(a);
    reader.feed(b);
    let _ = reader.usage();
});
