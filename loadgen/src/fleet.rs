//! What the run reads outside the requests themselves: the model servers' own counters (prefix
//! cache, requests served) and the CPU time of the processes that route (Envoy, an EPP, a router).

use std::collections::BTreeMap;

/// One model server's counters at one instant (sums over every label set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerCounters {
    /// `vllm:prefix_cache_hits[_total]`, tokens.
    pub prefix_hits: f64,
    /// `vllm:prefix_cache_queries[_total]`, tokens.
    pub prefix_queries: f64,
    /// `vllm:request_success[_total]`, requests finished.
    pub requests: f64,
}

/// The counters of a `/metrics` page in Prometheus text. vLLM writes counters with the
/// `_total` suffix; llm-d-inference-sim writes `vllm:prefix_cache_hits` and
/// `vllm:prefix_cache_queries` without it; both spellings are read.
pub fn parse(text: &str) -> ServerCounters {
    let mut c = ServerCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..name_end].trim_end_matches("_total");
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|x| x.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .unwrap_or(0.0)
        };
        match name {
            "vllm:prefix_cache_hits" => c.prefix_hits += value(),
            "vllm:prefix_cache_queries" => c.prefix_queries += value(),
            "vllm:request_success" => c.requests += value(),
            _ => {}
        }
    }
    c
}

/// Every server's counters, keyed by its `/metrics` URL's `host:port`; `None` if any page
/// cannot be read.
pub async fn read(
    urls: &[String],
    client: &reqwest::Client,
) -> Option<BTreeMap<String, ServerCounters>> {
    let mut out = BTreeMap::new();
    for u in urls {
        let text = client.get(u).send().await.ok()?.text().await.ok()?;
        out.insert(server_name(u), parse(&text));
    }
    Some(out)
}

/// `host:port` of a URL (the whole URL if it has no such part).
pub fn server_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Prefix-cache hit rate (0..1) between two readings, `None` when nothing was queried.
pub fn hit_rate(
    before: &BTreeMap<String, ServerCounters>,
    after: &BTreeMap<String, ServerCounters>,
) -> Option<f64> {
    let sum = |m: &BTreeMap<String, ServerCounters>, f: fn(&ServerCounters) -> f64| {
        m.values().map(f).sum::<f64>()
    };
    let hits = sum(after, |c| c.prefix_hits) - sum(before, |c| c.prefix_hits);
    let queries = sum(after, |c| c.prefix_queries) - sum(before, |c| c.prefix_queries);
    (queries > 0.0).then(|| hits / queries)
}

/// Each server's share (0..1) of the requests it finished between two readings.
pub fn served_share(
    before: &BTreeMap<String, ServerCounters>,
    after: &BTreeMap<String, ServerCounters>,
) -> BTreeMap<String, f64> {
    let done: BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, c)| (k, c.requests - before.get(k).map_or(0.0, |b| b.requests)))
        .collect();
    let total: f64 = done.values().sum();
    done.into_iter()
        .map(|(k, n)| (k.clone(), if total > 0.0 { n / total } else { 0.0 }))
        .collect()
}

/// CPU time (user + system, seconds) a process has used so far, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, Linux's USER_HZ); `None` when the process is gone or not Linux.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing ')' are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the ')'.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Total CPU seconds of `pids` (processes that are gone count 0).
pub fn cpu_total(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_counter_spellings() {
        let vllm = "# HELP x\nvllm:prefix_cache_hits_total{model_name=\"m\"} 30\n\
                    vllm:prefix_cache_queries_total{model_name=\"m\"} 40\n\
                    vllm:request_success_total{finished_reason=\"stop\"} 3\n\
                    vllm:request_success_total{finished_reason=\"length\"} 2\n\
                    vllm:prefix_cache_hits_created 17\n";
        assert_eq!(
            parse(vllm),
            ServerCounters {
                prefix_hits: 30.0,
                prefix_queries: 40.0,
                requests: 5.0
            }
        );
        let llmd = "vllm:prefix_cache_hits{model_name=\"m\"} 1600\nvllm:prefix_cache_queries{model_name=\"m\"} 2436\n";
        assert_eq!(parse(llmd).prefix_hits, 1600.0);
        assert_eq!(parse(llmd).prefix_queries, 2436.0);
    }

    #[test]
    fn rates_and_shares_are_deltas() {
        let c = |h, q, r| ServerCounters {
            prefix_hits: h,
            prefix_queries: q,
            requests: r,
        };
        let before = BTreeMap::from([
            ("a:1".to_string(), c(10.0, 20.0, 5.0)),
            ("b:2".to_string(), c(0.0, 0.0, 0.0)),
        ]);
        let after = BTreeMap::from([
            ("a:1".to_string(), c(40.0, 60.0, 8.0)),
            ("b:2".to_string(), c(10.0, 40.0, 9.0)),
        ]);
        assert_eq!(hit_rate(&before, &after), Some(0.5));
        let share = served_share(&before, &after);
        assert_eq!(share["a:1"], 0.25);
        assert_eq!(share["b:2"], 0.75);
        assert_eq!(
            server_name("http://127.0.0.1:8001/metrics"),
            "127.0.0.1:8001"
        );
    }

    #[test]
    fn this_process_has_used_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
