//! What the scheduler-core benches share: the clock reading and a pool with varied metrics.

use scheduler_core::Endpoint;

/// The benches' clock reading (ms); every endpoint's metrics are 20 ms old at it.
pub const NOW_MS: u64 = 10_000;

/// `n` endpoints with varied queue, running and KV-cache figures.
pub fn pool(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            let mut e = Endpoint::new(format!(
                "10.{}.{}.{}:8000",
                i / 65536,
                (i / 256) % 256,
                i % 256
            ));
            e.metrics.waiting_queue_size = (i * 7 % 11) as u32;
            e.metrics.running_requests = (i * 5 % 13) as u32;
            e.metrics.kv_cache_usage = (i * 37 % 100) as f64 / 100.0;
            e.metrics.cache_block_size_tokens = 16;
            e.metrics.cache_num_blocks = 27_215;
            e.metrics.update_time_ms = NOW_MS - 20;
            e
        })
        .collect()
}
