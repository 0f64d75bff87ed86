//! Where an endpoint runs, for topology-aware prefill selection (llm-d's `Topology` endpoint
//! attribute): its host, rack, zone and region, read from the endpoint's labels by
//! `topology-extractor` and compared with the peer endpoint (the decode pick) by
//! `topology-affinity-filter` and `topology-affinity-scorer`.
//!
//! A [`Topology`] holds, for each level, the position of the label that carries it in the
//! endpoint's `labels`, so building one per endpoint per request copies no string.

use alloc::vec::Vec;

use crate::model::endpoint::Endpoint;

/// Cycle-state key of the per-endpoint `Vec<Topology>` (indexed like the pool snapshot).
pub const TOPOLOGY: &str = "Topology";

/// A topology tier, tightest first. Sharing a host implies sharing the rack, zone and region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Same host (NVLink on 8-GPU baseboards).
    Host,
    /// Same rack (one switch).
    Rack,
    /// Same zone.
    Zone,
    /// Same region.
    Region,
    /// Nothing in common.
    None,
}

impl Level {
    /// The four comparable levels, tightest first.
    pub const ALL: [Level; 4] = [Level::Host, Level::Rack, Level::Zone, Level::Region];

    /// Parses a configuration value: `host`, `rack`, `zone` or `region`.
    pub fn parse(name: &str) -> Option<Level> {
        match name {
            "host" => Some(Level::Host),
            "rack" => Some(Level::Rack),
            "zone" => Some(Level::Zone),
            "region" => Some(Level::Region),
            _ => None,
        }
    }

    fn slot(self) -> Option<usize> {
        match self {
            Level::Host => Some(0),
            Level::Rack => Some(1),
            Level::Zone => Some(2),
            Level::Region => Some(3),
            Level::None => None,
        }
    }
}

/// Where one endpoint runs: per level (host, rack, zone, region), the index of the label in
/// its `labels` that carries the value, if it has one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    labels: [Option<u16>; 4],
}

impl Topology {
    /// The topology of `endpoint`, reading `keys` (label names for host, rack, zone, region).
    pub fn of(endpoint: &Endpoint, keys: &[&str; 4]) -> Topology {
        let mut t = Topology::default();
        for (slot, key) in t.labels.iter_mut().zip(keys) {
            *slot = endpoint
                .labels
                .iter()
                .position(|(k, _)| k == key)
                .and_then(|i| u16::try_from(i).ok());
        }
        t
    }

    /// The value at `level` for `endpoint` (the one this topology was read from); `None` when
    /// missing or empty.
    pub fn value<'e>(&self, endpoint: &'e Endpoint, level: Level) -> Option<&'e str> {
        let i = (*self.labels.get(level.slot()?)?)?;
        endpoint
            .labels
            .get(usize::from(i))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// True when any level has a non-empty value.
    pub fn is_known(&self, endpoint: &Endpoint) -> bool {
        Level::ALL
            .iter()
            .any(|&l| self.value(endpoint, l).is_some())
    }
}

/// The tightest level at which `peer` and `candidate` share a non-empty, equal value, else
/// [`Level::None`]. A missing value never matches, not even a missing one on both sides.
pub fn compare(peer: (&Endpoint, &Topology), candidate: (&Endpoint, &Topology)) -> Level {
    Level::ALL
        .into_iter()
        .find(|&l| {
            matches!((peer.1.value(peer.0, l), candidate.1.value(candidate.0, l)),
                (Some(a), Some(b)) if a == b)
        })
        .unwrap_or(Level::None)
}

/// The peer's and each candidate's topology for this cycle, when `topology-extractor` ran and
/// the peer is known with some topology: `(peer endpoint, its topology, every endpoint's)`.
pub fn peer_topology<'a>(
    cx: &crate::plugin::CycleContext<'a>,
) -> Option<(&'a Endpoint, Topology, &'a [Topology])> {
    let all: &Vec<Topology> = cx.state.get(TOPOLOGY)?;
    let p = cx.peer?;
    let peer = cx.endpoints.get(p)?;
    let t = *all.get(p)?;
    t.is_known(peer).then_some((peer, t, all.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 4] = ["host", "rack", "zone", "region"];

    fn ep(labels: &[(&str, &str)]) -> (Endpoint, Topology) {
        let mut e = Endpoint::new("10.0.0.1:8000");
        for (k, v) in labels {
            e = e.with_label(k, v);
        }
        let t = Topology::of(&e, &KEYS);
        (e, t)
    }

    #[test]
    fn compare_finds_the_tightest_shared_level() {
        let peer = ep(&[
            ("host", "h1"),
            ("rack", "r1"),
            ("zone", "z1"),
            ("region", "g1"),
        ]);
        let cases: &[(&[(&str, &str)], Level)] = &[
            (
                &[
                    ("host", "h1"),
                    ("rack", "r1"),
                    ("zone", "z1"),
                    ("region", "g1"),
                ],
                Level::Host,
            ),
            (
                &[("host", "h2"), ("rack", "r1"), ("zone", "z1")],
                Level::Rack,
            ),
            (
                &[("host", "h2"), ("rack", "r2"), ("zone", "z1")],
                Level::Zone,
            ),
            (&[("zone", "z9"), ("region", "g1")], Level::Region),
            (&[("host", "h9"), ("region", "g9")], Level::None),
            (&[], Level::None),
            // Same host label only: host wins even when nothing else is known.
            (&[("host", "h1")], Level::Host),
        ];
        for (labels, want) in cases {
            let c = ep(labels);
            assert_eq!(
                compare((&peer.0, &peer.1), (&c.0, &c.1)),
                *want,
                "{labels:?}"
            );
        }
    }

    #[test]
    fn a_missing_or_empty_value_never_matches() {
        let a = ep(&[("rack", "r1")]);
        let b = ep(&[("rack", "r1")]);
        assert_eq!(
            compare((&a.0, &a.1), (&b.0, &b.1)),
            Level::Rack,
            "host missing on both"
        );
        let a = ep(&[("host", ""), ("zone", "z")]);
        let b = ep(&[("host", ""), ("zone", "z")]);
        assert_eq!(
            compare((&a.0, &a.1), (&b.0, &b.1)),
            Level::Zone,
            "empty host on both"
        );
        assert!(!ep(&[("host", "")]).1.is_known(&ep(&[("host", "")]).0));
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("rack"), Some(Level::Rack));
        assert_eq!(Level::parse("Host"), None);
        assert!(Level::Host < Level::Rack && Level::Region < Level::None);
    }
}
