//! Redis's glob patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`, `[abc]`,
//! `[^a-z]`, `\x`.
//!
//! Invariant: matching takes time polynomial in the pattern and subject (a memo of
//! positions tried), never exponential, whatever the pattern.

/// True when `subject` matches `pattern` (case-sensitive, as Redis's `stringmatchlen`).
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    // Positions (pattern, subject) already found not to match, for patterns with `*`.
    let mut failed = std::collections::HashSet::new();
    go(pattern, subject, 0, 0, &mut failed)
}

fn go(
    p: &[u8],
    s: &[u8],
    mut pi: usize,
    mut si: usize,
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    while pi < p.len() {
        match p[pi] {
            b'*' => {
                while pi + 1 < p.len() && p[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                for start in si..=s.len() {
                    if failed.contains(&(pi + 1, start)) {
                        continue;
                    }
                    if go(p, s, pi + 1, start, failed) {
                        return true;
                    }
                    failed.insert((pi + 1, start));
                }
                return false;
            }
            b'?' => {
                if si == s.len() {
                    return false;
                }
                si += 1;
                pi += 1;
            }
            b'[' => {
                if si == s.len() {
                    return false;
                }
                let c = s[si];
                pi += 1;
                let not = p.get(pi) == Some(&b'^');
                if not {
                    pi += 1;
                }
                let mut hit = false;
                loop {
                    match p.get(pi) {
                        None => {
                            pi -= 1;
                            break;
                        }
                        Some(b']') => break,
                        Some(b'\\') if pi + 1 < p.len() => {
                            pi += 1;
                            hit |= p[pi] == c;
                        }
                        Some(&lo) if p.get(pi + 1) == Some(&b'-') && pi + 2 < p.len() => {
                            let hi = p[pi + 2];
                            let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
                            hit |= (lo..=hi).contains(&c);
                            pi += 2;
                        }
                        Some(&x) => hit |= x == c,
                    }
                    pi += 1;
                }
                pi += 1;
                if hit == not {
                    return false;
                }
                si += 1;
            }
            b'\\' if pi + 1 < p.len() => {
                if si == s.len() || s[si] != p[pi + 1] {
                    return false;
                }
                pi += 2;
                si += 1;
            }
            c => {
                if si == s.len() || s[si] != c {
                    return false;
                }
                pi += 1;
                si += 1;
            }
        }
    }
    si == s.len()
}

/// The literal text every match starts with (up to the first special character): the
/// prefix to scan the store's keys by.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern.iter().position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\')).unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redis_patterns() {
        assert!(matches(b"*", b""));
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h*llo", b"heeeello"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-b]llo", b"hbllo"));
        assert!(matches(b"a\\*b", b"a*b"));
        assert!(!matches(b"a\\*b", b"axb"));
        assert!(matches(b"user:*:name", b"user:42:name"));
        assert!(!matches(b"user:*:name", b"user:42:age"));
        let long = vec![b'a'; 200];
        assert!(!matches(&[&b"*a"[..]; 30].concat().iter().chain(b"b").copied().collect::<Vec<_>>(), &long));
        assert_eq!(literal_prefix(b"user:*"), b"user:");
    }
}
