//! The properties issue 10 asks of `prefix-rendezvous-scorer`, over random pools and prompts
//! (proptest): independent pickers given the same snapshot pick the same endpoint; removing one
//! of N endpoints moves only the prefixes that endpoint won, and adding one moves only prefixes
//! to the newcomer; and on the hashing path no endpoint
//! is handed a request while above `(1 + ε) × mean + 1` load, even when one prefix is hot; with
//! `choices: 2` the less loaded of a prefix's first two endpoints takes it; and on the scraper's
//! load average (the default) nobody is handed a request above the widest per-key bound.

use proptest::prelude::*;
use scheduler_core::plugins::scorer::prefix_rendezvous::{
    order, prefix_key, rendezvous_order, LoadSignal,
};
use scheduler_core::{load, Endpoint, InferenceRequest, Registry, RequestState, SplitMix64};

const CONFIG: &str = r#"{
  "plugins": [{"type": "prefix-rendezvous-scorer"}, {"type": "max-score-picker"}],
  "schedulingProfiles": [{"name": "default", "plugins": [
    {"pluginRef": "prefix-rendezvous-scorer"}, {"pluginRef": "max-score-picker"}]}]
}"#;

fn pool(loads: &[(u32, u32)]) -> Vec<Endpoint> {
    loads
        .iter()
        .enumerate()
        .map(|(i, &(q, r))| {
            let mut e = Endpoint::new(format!("10.1.{}.{}:8000", i / 200, i % 200));
            e.metrics.waiting_queue_size = q;
            e.metrics.running_requests = r;
            e.metrics.update_time_ms = 1_000;
            e
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn independent_pickers_agree(
        loads in prop::collection::vec((0u32..20, 0u32..20), 1..32),
        prompts in prop::collection::vec("[a-z ]{0,400}", 1..20),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
    ) {
        let eps = pool(&loads);
        // Two replicas: separately loaded pickers, different random sources.
        let (a, _) = load(CONFIG, &Registry::with_builtins()).unwrap();
        let (b, _) = load(CONFIG, &Registry::with_builtins()).unwrap();
        let (mut ra, mut rb) = (SplitMix64::new(seed_a), SplitMix64::new(seed_b));
        for p in &prompts {
            let req = InferenceRequest::new("m", p);
            let pa = a.schedule(&req, &eps, 1_000, &mut ra, &mut RequestState::new()).unwrap();
            let pb = b.schedule(&req, &eps, 1_000, &mut rb, &mut RequestState::new()).unwrap();
            prop_assert_eq!(pa.primary_targets(), pb.primary_targets());
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_prefixes(
        n in 2usize..40,
        gone in any::<prop::sample::Index>(),
        keys in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let eps = pool(&vec![(0, 0); n]);
        let all: Vec<usize> = (0..n).collect();
        let gone = gone.index(n);
        let rest: Vec<usize> = all.iter().copied().filter(|&i| i != gone).collect();
        for k in keys {
            let before = rendezvous_order(k, &eps, &all, 0.25)[0];
            let after = rendezvous_order(k, &eps, &rest, 0.25)[0];
            if before != gone {
                prop_assert_eq!(before, after, "key {} moved although its endpoint stayed", k);
            }
        }
    }

    #[test]
    fn adding_an_endpoint_takes_only_the_prefixes_it_wins(
        n in 1usize..40,
        keys in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let eps = pool(&vec![(0, 0); n + 1]);
        let before_set: Vec<usize> = (0..n).collect();
        let after_set: Vec<usize> = (0..=n).collect();
        for k in keys {
            let before = rendezvous_order(k, &eps, &before_set, 0.25)[0];
            let after = rendezvous_order(k, &eps, &after_set, 0.25)[0];
            prop_assert!(after == before || after == n, "key {} moved between old endpoints", k);
        }
    }

    #[test]
    fn with_two_choices_the_less_loaded_of_the_first_two_wins(
        // Loads within the bound: at most 3 apart around a common level.
        base in 0u32..10,
        extra in prop::collection::vec(0u32..3, 2..16),
        prompts in prop::collection::vec("[a-z ]{1,300}", 1..20),
    ) {
        let loads: Vec<(u32, u32)> = extra.iter().map(|&x| (base + x, 0)).collect();
        let eps = pool(&loads);
        let all: Vec<usize> = (0..eps.len()).collect();
        // Rendezvous outweighs the queue scorer beyond its first two, which tie at 3.
        let config = r#"{"plugins": [{"type": "prefix-rendezvous-scorer", "parameters": {"choices": 2}},
            {"type": "queue-scorer"}, {"type": "max-score-picker"}],
          "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "prefix-rendezvous-scorer", "weight": 3},
            {"pluginRef": "queue-scorer", "weight": 1}, {"pluginRef": "max-score-picker"}]}]}"#;
        let (picker, _) = load(config, &Registry::with_builtins()).unwrap();
        let mut rng = SplitMix64::new(3);
        for p in &prompts {
            let req = InferenceRequest::new("m", p);
            let key = prefix_key("m", None, p, 256);
            let first_two = order(key, &eps, &all, 0.25, LoadSignal::Average);
            let (a, b) = (first_two[0], first_two[1]);
            let t = picker
                .schedule(&req, &eps, 1_000, &mut rng, &mut RequestState::new())
                .unwrap()
                .primary_targets()[0];
            prop_assert!(t == a || t == b, "{} is not one of the first two, {} and {}", t, a, b);
            let other = if t == a { b } else { a };
            prop_assert!(
                eps[t].metrics.waiting_queue_size <= eps[other].metrics.waiting_queue_size,
                "the busier of the two won"
            );
        }
    }

    #[test]
    fn the_hashing_path_respects_the_load_bound(
        n in 2usize..24,
        eps_factor in 0.0f64..1.0,
        // Most requests share one hot prefix.
        hot_share in 0.5f64..1.0,
        seed in any::<u64>(),
    ) {
        // Each request raises the load its bound reads by one (the last sample, or the
        // scraper's average without decay). No endpoint is handed a request while above
        // (1 + ε) × mean + 1 on the last sample, or (1 + 3ε/2) × mean + 1 — the highest
        // per-key threshold — on the average.
        for (signal, widest) in [(LoadSignal::LastSample, 1.0), (LoadSignal::Average, 1.5)] {
            let mut eps = pool(&vec![(0, 0); n]);
            let all: Vec<usize> = (0..n).collect();
            let hot = prefix_key("m", None, "the hot system prompt", 256);
            let mut rng = SplitMix64::new(seed);
            use scheduler_core::rng::Rng;
            let load = |e: &Endpoint| match signal {
                LoadSignal::LastSample => f64::from(e.metrics.waiting_queue_size),
                LoadSignal::Average => e.metrics.load_average,
            };
            for _ in 0..(n * 20) {
                let key = if rng.next_f64() < hot_share { hot } else { rng.next_u64() };
                let mean = eps.iter().map(load).sum::<f64>() / n as f64;
                let chosen = order(key, &eps, &all, eps_factor, signal)[0];
                let l = load(&eps[chosen]);
                prop_assert!(
                    l <= (1.0 + widest * eps_factor) * mean + 1.0,
                    "{:?}: load {}, mean {}", signal, l, mean
                );
                match signal {
                    LoadSignal::LastSample => eps[chosen].metrics.waiting_queue_size += 1,
                    LoadSignal::Average => eps[chosen].metrics.load_average += 1.0,
                }
            }
        }
    }
}

/// Servers each prefix group was sent to, and the most requests one server received, when
/// `replicas` independent pickers (each with its own prefix index, as separate proxies) take
/// turns over 8 servers whose queue grows by one per request they receive (the metrics every
/// proxy reads): the default profile, plus `extra` as a scorer when given.
fn placements(extra: &str, replicas: usize, groups: usize, per_group: usize) -> (Vec<usize>, u32) {
    let config = format!(
        r#"{{"plugins": [{{"type": "queue-scorer"}}, {{"type": "kv-cache-utilization-scorer"}},
            {{"type": "prefix-cache-scorer"}}, {{"type": "max-score-picker"}} {extra_plugin}],
           "schedulingProfiles": [{{"name": "default", "plugins": [
             {{"pluginRef": "queue-scorer", "weight": 2}}, {{"pluginRef": "kv-cache-utilization-scorer", "weight": 2}},
             {{"pluginRef": "prefix-cache-scorer", "weight": 3}}, {{"pluginRef": "max-score-picker"}} {extra_ref}]}}]}}"#,
        extra_plugin = if extra.is_empty() {
            String::new()
        } else {
            format!(r#", {{"type": "{extra}"}}"#)
        },
        extra_ref = if extra.is_empty() {
            String::new()
        } else {
            format!(r#", {{"pluginRef": "{extra}", "weight": 2}}"#)
        },
    );
    let pickers: Vec<_> = (0..replicas)
        .map(|_| load(&config, &Registry::with_builtins()).unwrap().0)
        .collect();
    let mut eps = pool(&[(0, 0); 8]);
    let mut rng = SplitMix64::new(9);
    let mut seen: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); groups];
    let mut turn = 0;
    for round in 0..per_group {
        for (g, seen) in seen.iter_mut().enumerate() {
            let system = format!("System prompt of tenant {g}: ").repeat(30);
            let req_text = format!("{system} question {round}");
            let req = InferenceRequest::new("m", &req_text);
            // Alternate proxies per request of a group, as a client spreading over replicas does.
            let picker = &pickers[(turn + round) % replicas];
            turn += 1;
            let r = picker
                .schedule(&req, &eps, 1_000, &mut rng, &mut RequestState::new())
                .unwrap();
            let t = r.primary_targets()[0];
            seen.insert(t);
            eps[t].metrics.waiting_queue_size += 1;
        }
    }
    let busiest = eps
        .iter()
        .map(|e| e.metrics.waiting_queue_size)
        .max()
        .unwrap_or(0);
    (seen.iter().map(|s| s.len()).collect(), busiest)
}

#[test]
fn two_replicas_place_each_prefix_once_with_rendezvous() {
    let (groups, per_group) = (16, 6);
    let (without, busiest_without) = placements("", 2, groups, per_group);
    let (with, busiest_with) = placements("prefix-rendezvous-scorer", 2, groups, per_group);
    let copies = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    println!(
        "2 independent pickers, 8 servers, {groups} prefix groups × {per_group} requests: servers \
         holding each group without the scorer {:.2}, with it {:.2}; busiest server {busiest_without} \
         vs {busiest_with} requests (mean {})",
        copies(&without),
        copies(&with),
        groups * per_group / 8
    );
    // Each prefix is cached on fewer servers than without the scorer, and the load bound holds:
    // with mean m = requests / 8 and ε = 0.25, nobody exceeds 1.25·m + 2.
    assert!(copies(&with) < copies(&without), "{with:?} vs {without:?}");
    let mean = (groups * per_group) as f64 / 8.0;
    assert!(
        f64::from(busiest_with) <= 1.25 * mean + 2.0,
        "{busiest_with}"
    );
}
