//! "Did you mean": the closest known name by edit distance.

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1) || c.starts_with(name))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `: did you mean `x`?` or nothing.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    closest(name, candidates)
        .map(|c| format!(": did you mean `{c}`?"))
        .unwrap_or_default()
}

/// `a`, `b` and `c`.
pub fn list(candidates: &[&str]) -> String {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        assert_eq!(
            closest("percentil", &["percentile", "count"]),
            Some("percentile")
        );
        assert_eq!(closest("windw", &["window", "watermark"]), Some("window"));
        assert_eq!(closest("zzz", &["window", "watermark"]), None);
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
