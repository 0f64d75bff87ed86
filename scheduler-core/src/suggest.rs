//! "Did you mean …?" for configuration typos: the closest known name by edit distance. A dozen
//! lines here rather than a crate: this crate is `no_std`, and the usual crate needs std.

use alloc::vec::Vec;

/// Levenshtein distance (insertions, deletions, substitutions) between two short names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, &cb) in b.iter().enumerate() {
            let up = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let v = (diag + usize::from(ca != cb))
                .min(up.saturating_add(1))
                .min(left.saturating_add(1));
            diag = up;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = v;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// The candidate closest to `name` when it is a likely typo: at most a third of `name`'s length
/// in edits (at least 1, at most 3).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let budget = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, c)| d <= budget && c != name)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_budgets() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let known = ["schedulingProfiles", "plugins", "featureGates"];
        assert_eq!(
            closest("schedulingProfile", known.iter().copied()),
            Some("schedulingProfiles")
        );
        assert_eq!(closest("plugin", known.iter().copied()), Some("plugins"));
        assert_eq!(closest("xyz", known.iter().copied()), None);
    }
}
