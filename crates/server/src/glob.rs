//! Redis's glob patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`, `[abc]`,
//! `[^a-z]`, `\x`.
//!
//! Invariant: matching takes O(pattern × subject) steps whatever the pattern (one
//! backtracking point, the last `*`, as in the classic two-pointer algorithm), so a
//! client's pattern cannot make `KEYS` or `SCAN` take exponential time.

/// True when `subject` matches `pattern` (case-sensitive, as Redis's `stringmatchlen`).
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the subject position the
    // star has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while si < subject.len() {
        if pattern.get(pi) == Some(&b'*') {
            while pattern.get(pi) == Some(&b'*') {
                pi += 1;
            }
            star = Some((pi, si));
            continue;
        }
        if let Some(next) = one(pattern, pi, subject[si]) {
            pi = next;
            si += 1;
            continue;
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pattern.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == pattern.len()
}

/// When the pattern element at `pi` (not `*`) matches byte `c`: the position after it.
fn one(p: &[u8], pi: usize, c: u8) -> Option<usize> {
    match *p.get(pi)? {
        b'?' => Some(pi + 1),
        b'[' => {
            let mut i = pi + 1;
            let not = p.get(i) == Some(&b'^');
            if not {
                i += 1;
            }
            let mut hit = false;
            // An unterminated class ends with the pattern (as in Redis).
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                    hit |= p[i] == c;
                } else if i + 2 < p.len() && p[i + 1] == b'-' {
                    let (lo, hi) = if p[i] <= p[i + 2] { (p[i], p[i + 2]) } else { (p[i + 2], p[i]) };
                    hit |= (lo..=hi).contains(&c);
                    i += 2;
                } else {
                    hit |= p[i] == c;
                }
                i += 1;
            }
            (hit != not).then_some((i + 1).min(p.len()))
        }
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(pi + 2),
        x => (x == c).then_some(pi + 1),
    }
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
        assert!(matches(b"a*b*c", b"aXbYbZc"));
        assert!(!matches(b"a*b*c", b"aXbYbZ"));
        assert!(matches(b"*", b"anything"));
        assert!(matches(b"[abc", b"b"));
        // Many stars against a long subject that almost matches (exponential for a naive
        // backtracking matcher).
        let long = vec![b'a'; 5000];
        let mut pattern = b"*a".repeat(2000);
        pattern.push(b'b');
        assert!(!matches(&pattern, &long));
        assert_eq!(literal_prefix(b"user:*"), b"user:");
    }
}
