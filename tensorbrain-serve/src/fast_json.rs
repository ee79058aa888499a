//! A one-pass reader for the common case of a tensor's JSON `data`: a flat array of FP32
//! numbers. serde_json's path (checking the raw value, then a visitor per element, each number
//! parsed as f64 and narrowed) was about a quarter of the server's CPU time at 5,000 JSON
//! requests/s; this scans the bytes once and parses each number straight to the nearest f32.
//!
//! It only accepts what it fully understands: anything else (nested arrays, `true`, a number
//! outside JSON's grammar, one that overflows f32, more values than the shape holds, a syntax
//! error) returns `None`, and the caller takes serde's path, which gives the error message.

/// The numbers of `text` if it is a flat JSON array of at most `count` finite f32 values.
pub fn flat_f32_array(text: &[u8], count: usize) -> Option<Vec<f32>> {
    let mut at = skip_ws(text, 0);
    if text.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_ws(text, at + 1);
    let mut out = Vec::with_capacity(count);
    if text.get(at) == Some(&b']') {
        return (skip_ws(text, at + 1) == text.len()).then_some(out);
    }
    loop {
        let end = number_end(text, at)?;
        let v: f32 = fast_float2::parse(&text[at..end]).ok()?;
        if !v.is_finite() || out.len() == count {
            return None;
        }
        out.push(v);
        at = skip_ws(text, end);
        match text.get(at) {
            Some(b',') => at = skip_ws(text, at + 1),
            Some(b']') => return (skip_ws(text, at + 1) == text.len()).then_some(out),
            _ => return None,
        }
    }
}

fn skip_ws(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Where the JSON number starting at `at` ends: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
/// fast_float also takes `inf`, `+1`, `.5` and `1.`, which JSON does not.
fn number_end(text: &[u8], mut at: usize) -> Option<usize> {
    let digits = |mut at: usize| {
        let start = at;
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        (at > start).then_some(at)
    };
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match text.get(at)? {
        b'0' => at + 1,
        b'1'..=b'9' => digits(at)?,
        _ => return None,
    };
    if text.get(at) == Some(&b'.') {
        at = digits(at + 1)?;
    }
    if matches!(text.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        at = digits(at)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::flat_f32_array;

    fn read(s: &str, count: usize) -> Option<Vec<f32>> {
        flat_f32_array(s.as_bytes(), count)
    }

    #[test]
    fn reads_flat_arrays_like_a_correctly_rounding_parser() {
        assert_eq!(read("[]", 0), Some(vec![]));
        assert_eq!(read(" [ 1 , -2.5e1,0.125 ,3E-2, 0, -0.0 ] ", 6), Some(vec![1.0, -25.0, 0.125, 0.03, 0.0, -0.0]));
        // Nearest f32 to the decimal, not f64-then-f32 (which can round twice).
        for s in ["0.1", "3.4028235e38", "1e-45", "16777217", "0.30000001192092896", "2.0000001"] {
            assert_eq!(read(&format!("[{s}]"), 1), Some(vec![s.parse::<f32>().unwrap()]), "{s}");
        }
        // Every f32's shortest form reads back as itself.
        let mut x = 1.0e-30f32;
        while x < 1e30 {
            let text = format!("[{x},{}]", -x);
            assert_eq!(read(&text, 2), Some(vec![x, -x]));
            x *= 1.37;
        }
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for bad in [
            "", "[", "[1", "[1,]", "[,1]", "[1 2]", "[1]x", "1", "{}", "[[1]]", "[true]", "[null]", "[\"1\"]",
            "[+1]", "[.5]", "[1.]", "[01]", "[1e]", "[1e+]", "[-]", "[inf]", "[NaN]", "[1e39]", "[-1e400]",
        ] {
            assert_eq!(read(bad, 8), None, "{bad:?}");
        }
        // More values than the shape holds.
        assert_eq!(read("[1,2,3]", 2), None);
        assert_eq!(read("[1,2,3]", 3), Some(vec![1.0, 2.0, 3.0]));
    }

    /// Differential fuzzing against serde_json: on strings made of JSON's number and array
    /// characters (mostly invalid), whatever the fast path accepts, serde accepts too, as the
    /// same numbers (each the correctly rounded f32 of its text, as `str::parse` gives it).
    #[test]
    fn accepts_nothing_serde_rejects_and_agrees_with_it() {
        const ALPHABET: &[u8] = b"0123456789-+.eE, []\n0123456789,";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for case in 0..200_000 {
            let len = (next() % 24) as usize;
            let mut text: Vec<u8> = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            // Half the cases are bracketed, so that valid arrays come up often.
            if case % 2 == 0 {
                text.insert(0, b'[');
                text.push(b']');
            }
            let Some(fast) = flat_f32_array(&text, 16) else { continue };
            accepted += 1;
            let shown = String::from_utf8_lossy(&text).into_owned();
            let numbers: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(&text).unwrap_or_else(|e| panic!("fast path took {shown:?}, serde refuses it: {e}"));
            assert_eq!(numbers.len(), fast.len(), "{shown:?}");
            for (raw, got) in numbers.iter().zip(&fast) {
                let want: f32 = raw.get().parse().unwrap();
                assert_eq!(want.to_bits(), got.to_bits(), "{shown:?}");
            }
        }
        assert!(accepted > 1000, "only {accepted} cases were valid arrays");
    }
}
