//! NVIDIA DCGM exporter pages: the GPU utilisation of the endpoint's GPUs, as llm-d's
//! `dcgm-extractor` reads it (llm-d-router `datalayer/extractor/dcgm`, in our words): the
//! samples of `DCGM_FI_DEV_GPU_UTIL` (percent, one per GPU), those carrying a `pod` label only
//! when it names this endpoint's pod (a DaemonSet exporter lists every pod of its node), the
//! highest one, as a fraction 0..1.

use crate::parse::prometheus::samples;

/// The DCGM series of GPU utilisation (percent).
pub const GPU_UTIL_METRIC: &str = "DCGM_FI_DEV_GPU_UTIL";

/// The highest GPU utilisation (fraction 0..1) on `page` for the pod `pod` (`None`: every
/// sample counts); `None` when the page has no finite sample of [`GPU_UTIL_METRIC`] for it or
/// does not parse.
pub fn gpu_utilization(page: &str, pod: Option<&str>) -> Option<f64> {
    let mut best: Option<f64> = None;
    for s in samples(page) {
        let s = s.ok()?;
        if s.name != GPU_UTIL_METRIC || !s.value.is_finite() {
            continue;
        }
        if let (Some(want), Some(got)) = (pod, s.label("pod")) {
            if got != want {
                continue;
            }
        }
        best = Some(best.map_or(s.value, |b: f64| b.max(s.value)));
    }
    best.map(|v| (v / 100.0).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n\
        # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
        DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-a\",pod=\"vllm-0\"} 35\n\
        DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"GPU-b\",pod=\"vllm-0\"} 80\n\
        DCGM_FI_DEV_GPU_UTIL{gpu=\"2\",UUID=\"GPU-c\",pod=\"vllm-1\"} 99\n\
        DCGM_FI_DEV_FB_USED{gpu=\"0\"} 1234\n";

    #[test]
    fn highest_gpu_of_the_pod() {
        assert_eq!(gpu_utilization(PAGE, Some("vllm-0")), Some(0.80));
        assert_eq!(gpu_utilization(PAGE, Some("vllm-1")), Some(0.99));
        assert_eq!(gpu_utilization(PAGE, None), Some(0.99));
        assert_eq!(gpu_utilization("DCGM_FI_DEV_FB_USED 1\n", None), None);
        assert_eq!(
            gpu_utilization("DCGM_FI_DEV_GPU_UTIL 250\n", None),
            Some(1.0)
        );
        assert_eq!(gpu_utilization("not prometheus {{{\n", None), None);
    }
}
