//! The fast path of [`FeedbackDecoder`](super::FeedbackDecoder): a byte scanner for the
//! common shape of a `FeedbackEvent` line, a flat JSON object of ASCII strings without
//! escapes, numbers and literals.
//!
//! It accepts only what it fully checks: anything else (an escape, a non-ASCII byte, a
//! nested value, a duplicate or missing field, a malformed token, a timestamp in another
//! form) makes it give up, and the decoder runs the serde path on the same bytes, which
//! decides (and words any error). Numbers of the fields read go through `serde_json`'s own
//! number parser, so values are bit for bit those of the serde path.

use crate::FeedbackEvent;
use chrono::{DateTime, Utc};

/// Decodes `json` into `e` (already reset) if it has the common shape, returning the
/// fields present (a null rating is absent); `None` if the serde path must decide.
pub(super) fn scan(
    json: &[u8],
    fields: super::FeedbackFields,
    e: &mut FeedbackEvent,
) -> Option<u16> {
    scan_object(json, fields, e)
}

fn scan_object(b: &[u8], fields: super::FeedbackFields, e: &mut FeedbackEvent) -> Option<u16> {
    let mut i = ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = ws(b, i + 1);
    let mut seen: u16 = 0;
    if *b.get(i)? == b'}' {
        return None; // no timestamp
    }
    // Producers write the fields in one order, usually the struct's: the next key is
    // first compared, whole and quoted, with the name after the last one's.
    let mut expect = 0;
    loop {
        let (field, next) = match expected_key(b, i, expect) {
            Some(next) => (Some(expect), next),
            None => {
                let (key, next) = string(b, i)?;
                (field_of(key), next)
            }
        };
        if let Some(f) = field {
            expect = f + 1;
        }
        i = ws(b, next);
        if *b.get(i)? != b':' {
            return None;
        }
        i = ws(b, i + 1);
        match field {
            Some(f) if seen & (1 << f) != 0 => return None, // duplicate: serde reports it
            Some(f) => seen |= 1 << f,
            None => {}
        }
        i = match field {
            Some(f) if fields.has(f) => {
                let j = value(b, i, f, e)?;
                if f == 10 && e.rating.is_none() {
                    seen &= !(1 << f); // `"rating": null`: not rated
                }
                j
            }
            _ => skip(b, i)?,
        };
        i = ws(b, i);
        match *b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    if seen & (1 << super::TIMESTAMP) == 0 || ws(b, i + 1) != b.len() {
        return None;
    }
    Some(seen)
}

/// The index after the key at `i` if it is field `f`'s name, quoted (what [`string`] and
/// [`field_of`] would find: a name is plain ASCII). Compared as two masked words where
/// sixteen bytes are left (a name and its quotes take at most fifteen).
#[inline]
fn expected_key(b: &[u8], i: usize, f: usize) -> Option<usize> {
    let q = QUOTED.get(f)?;
    if let Some(w) = b.get(i..i + 16) {
        let w0 = u64::from_le_bytes(w[..8].try_into().expect("eight bytes"));
        let w1 = u64::from_le_bytes(w[8..].try_into().expect("eight bytes"));
        return (w0 & q.masks[0] == q.words[0] && w1 & q.masks[1] == q.words[1])
            .then_some(i + q.len);
    }
    let name = super::NAMES[f].as_bytes();
    let end = i + 1 + name.len();
    (b.get(i) == Some(&b'"') && b.get(i + 1..end) == Some(name) && b.get(end) == Some(&b'"'))
        .then_some(end + 1)
}

/// A field's name in quotes as two little-endian words, and which of their bytes it takes.
struct Quoted {
    len: usize,
    words: [u64; 2],
    masks: [u64; 2],
}

const fn quoted(name: &str) -> Quoted {
    let name = name.as_bytes();
    let len = name.len() + 2;
    assert!(len <= 16, "a field name of at most 14 bytes");
    let mut words = [0u64; 2];
    let mut masks = [0u64; 2];
    let mut k = 0;
    while k < len {
        let byte = if k == 0 || k == len - 1 {
            b'"'
        } else {
            name[k - 1]
        };
        words[k / 8] |= (byte as u64) << (k % 8 * 8);
        masks[k / 8] |= 0xff << (k % 8 * 8);
        k += 1;
    }
    Quoted { len, words, masks }
}

const QUOTED: [Quoted; super::NAMES.len()] = {
    let mut i = 0;
    let mut all = [const {
        Quoted {
            len: 0,
            words: [0; 2],
            masks: [0; 2],
        }
    }; super::NAMES.len()];
    while i < all.len() {
        all[i] = quoted(super::NAMES[i]);
        i += 1;
    }
    all
};

/// A field's index by its name's bytes (no UTF-8 check needed); the order of `NAMES`.
pub(super) fn field_of(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"event_id" => 0,
        b"timestamp" => 1,
        b"model" => 2,
        b"region" => 3,
        b"tenant" => 4,
        b"latency_ms" => 5,
        b"ttft_ms" => 6,
        b"input_tokens" => 7,
        b"output_tokens" => 8,
        b"cost_usd" => 9,
        b"rating" => 10,
        b"success" => 11,
        _ => return None,
    })
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// A string of printable ASCII without escapes starting at `i`: its bytes and the index
/// after its closing quote.
fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let start = i + 1;
    // One pass: the closing quote, or a byte that needs the serde path.
    let len = plain_len(&b[start..])?;
    if b[start + len] != b'"' {
        return None;
    }
    Some((&b[start..start + len], start + len + 1))
}

/// The index of the first byte of `s` that ends or leaves a plain string: a quote, a
/// backslash, or a byte outside printable ASCII. Eight bytes at a time: each test below
/// flags exactly the lowest byte that meets it (a flag above it may be a borrow's), so the
/// lowest flag of all is the first such byte.
#[inline]
fn plain_len(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut k = 0;
    while let Some(word) = s.get(k..k + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let hits = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | zero(x ^ (ONES * 0x7f))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH) // below 0x20
            | (x & HIGH); // not ASCII
        if hits != 0 {
            return Some(k + hits.trailing_zeros() as usize / 8);
        }
        k += 8;
    }
    s[k..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c))
        .map(|p| k + p)
}

/// A JSON number token starting at `i` (strict grammar) and the index after it.
fn number(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let mut j = i;
    let digits = |j: &mut usize| {
        let from = *j;
        while b.get(*j).is_some_and(u8::is_ascii_digit) {
            *j += 1;
        }
        *j > from
    };
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match b.get(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => {
            digits(&mut j);
        }
        _ => return None,
    }
    if b.get(j) == Some(&b'.') {
        j += 1;
        if !digits(&mut j) {
            return None;
        }
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !digits(&mut j) {
            return None;
        }
    }
    Some((&b[i..j], j))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..i + word.len())
        .filter(|w| *w == word)
        .map(|_| i + word.len())
}

/// Skips one flat value (string, number, literal); `None` for nested values.
fn skip(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string(b, i).map(|(_, j)| j),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        _ => number(b, i).map(|(_, j)| j),
    }
}

fn f64_of(token: &[u8]) -> Option<f64> {
    serde_json::from_slice(token).ok()
}

/// Reads field `f` into `e`.
fn value(b: &[u8], i: usize, f: usize, e: &mut FeedbackEvent) -> Option<usize> {
    let str_into = |s: &mut String| {
        let (v, j) = string(b, i)?;
        s.push_str(std::str::from_utf8(v).ok()?);
        Some(j)
    };
    match f {
        0 => str_into(&mut e.event_id),
        1 => {
            if b.get(i) == Some(&b'"') {
                let (v, j) = string(b, i)?;
                e.timestamp = super::utc_fast(v)?;
                Some(j)
            } else {
                let (v, j) = number(b, i)?;
                let ms: i64 = serde_json::from_slice(v).ok()?;
                e.timestamp = DateTime::<Utc>::from_timestamp_millis(ms)?;
                Some(j)
            }
        }
        2 => str_into(&mut e.model),
        3 => str_into(&mut e.region),
        4 => str_into(&mut e.tenant),
        5 | 6 | 9 => {
            let (v, j) = number(b, i)?;
            let x = f64_of(v)?;
            match f {
                5 => e.latency_ms = x,
                6 => e.ttft_ms = x,
                _ => e.cost_usd = x,
            }
            Some(j)
        }
        7 | 8 => {
            let (v, j) = number(b, i)?;
            let x: u32 = serde_json::from_slice(v).ok()?;
            if f == 7 {
                e.input_tokens = x;
            } else {
                e.output_tokens = x;
            }
            Some(j)
        }
        10 => match literal(b, i, b"null") {
            Some(j) => {
                e.rating = None;
                Some(j)
            }
            None => {
                let (v, j) = number(b, i)?;
                e.rating = Some(f64_of(v)?);
                Some(j)
            }
        },
        _ => {
            if let Some(j) = literal(b, i, b"true") {
                e.success = true;
                Some(j)
            } else {
                let j = literal(b, i, b"false")?;
                e.success = false;
                Some(j)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::FeedbackFields;
    use super::*;

    fn fast(json: &str) -> Option<FeedbackEvent> {
        let mut e = FeedbackEvent::default();
        scan(json.as_bytes(), FeedbackFields::ALL, &mut e).map(|_| e)
    }

    #[test]
    fn takes_the_common_shape() {
        let line = r#"{"event_id":"ev-1","timestamp":"2026-01-01T00:00:00.720Z","model":"m","region":"r","tenant":"t","latency_ms":1328.738,"ttft_ms":397.61,"input_tokens":760,"output_tokens":212,"cost_usd":9.72e-4,"rating":null,"success":false,"extra":-0.5}"#;
        let e = fast(line).expect("common shape");
        assert_eq!(e, serde_json::from_str::<FeedbackEvent>(line).unwrap());
        assert!(fast(r#" {"timestamp":1767225600720} "#).is_some());
    }

    #[test]
    fn keys_in_another_order_or_that_begin_with_a_name_are_read_as_serde_reads_them() {
        for line in [
            r#"{"model":"m","timestamp":1,"region":"r","latency_ms":2}"#,
            r#"{"event_id":"e","timestamp_ms":5,"timestamp":1,"models":"x","model":"m"}"#,
            r#"{"timestamp":1,"model" :"m","region":"r","regionx":"q"}"#,
            r#"{"success":true,"rating":4,"cost_usd":1.5,"timestamp":1,"event_id":"z"}"#,
        ] {
            let e = fast(line).expect("common shape");
            assert_eq!(
                e,
                serde_json::from_str::<FeedbackEvent>(line).unwrap(),
                "{line}"
            );
        }
        // A name met twice is still a duplicate, whichever way it was matched.
        assert!(fast(r#"{"timestamp":1,"model":"a","model":"b"}"#).is_none());
    }

    #[test]
    fn plain_len_stops_where_the_byte_by_byte_scan_stops() {
        let naive = |s: &[u8]| {
            s.iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c))
        };
        let mut s = vec![b'a'; 40];
        assert_eq!(plain_len(&s), None);
        for at in 0..40 {
            for c in (0..=255u8).filter(|&c| c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c))
            {
                s[at] = c;
                // and a second stop later, which must not win
                let later = (at + 3).min(39);
                let keep = s[later];
                if later != at {
                    s[later] = 0x01;
                }
                assert_eq!(plain_len(&s), naive(&s), "byte {c:#x} at {at}");
                s[later] = keep;
                s[at] = b'a';
            }
        }
        // Borrows across bytes: a stop just below 0x20 next to bytes near the limits.
        for w in [b"\x1f\x20\x7e\x21abcd", b"~\x7f~~~~~~", b" !\"#$%&'"] {
            assert_eq!(plain_len(&w[..]), naive(&w[..]));
        }
        // Random strings over bytes at and around every limit.
        let palette = [
            0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0xa2,
            0xdc, 0xff, b'a',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let w: Vec<u8> = (0..len)
                .map(|i| {
                    let r = (seed >> (i % 8 * 8)) as usize ^ (i * 7);
                    if r.is_multiple_of(5) {
                        palette[r % palette.len()]
                    } else {
                        b'a' + (r % 26) as u8
                    }
                })
                .collect();
            assert_eq!(plain_len(&w), naive(&w), "{w:?}");
        }
    }

    #[test]
    fn an_expected_key_is_what_string_and_field_of_find() {
        for (f, name) in super::super::NAMES.iter().enumerate() {
            for line in [
                format!(r#""{name}":1,"padding":"to sixteen bytes and more""#),
                format!(r#""{name}":1"#),
                format!(r#""{name}x":1,"padding":"to sixteen bytes and more""#),
                format!(r#""{name}"#),
                format!(
                    r#""{}":1,"padding":"to sixteen bytes and more""#,
                    &name[1..]
                ),
            ] {
                let b = line.as_bytes();
                let by_string = string(b, 0)
                    .filter(|(k, _)| field_of(k) == Some(f))
                    .map(|(_, j)| j);
                for other in 0..super::super::NAMES.len() {
                    let found = expected_key(b, 0, other);
                    if other == f {
                        assert_eq!(found, by_string, "{line}");
                    } else if field_of(string(b, 0).map_or(&b""[..], |(k, _)| k)) != Some(other) {
                        assert_eq!(found, None, "{line} as field {other}");
                    }
                }
            }
        }
    }

    #[test]
    fn knows_the_fields_by_their_bytes() {
        for (i, name) in super::super::NAMES.iter().enumerate() {
            assert_eq!(field_of(name.as_bytes()), Some(i));
        }
        assert_eq!(field_of(b"latency"), None);
    }

    #[test]
    fn gives_up_on_anything_else() {
        for json in [
            r#"{"timestamp":1,"model":"caf\u00e9"}"#,
            r#"{"timestamp":1,"model":"café"}"#,
            r#"{"timestamp":1,"extra":{"a":1}}"#,
            r#"{"timestamp":1,"extra":[1]}"#,
            r#"{"timestamp":"2026-01-01T00:00:00+02:00"}"#,
            r#"{"timestamp":1,"timestamp":2}"#,
            r#"{"model":"m"}"#,
            r#"{"timestamp":1,"latency_ms":01}"#,
            r#"{"timestamp":1,"latency_ms":1.}"#,
            r#"{"timestamp":1,"input_tokens":1.5}"#,
            r#"{"timestamp":1,"success":nul}"#,
            r#"{"timestamp":1,}"#,
            r#"{"timestamp":1} x"#,
            r#"{}"#,
        ] {
            assert!(fast(json).is_none(), "took {json}");
        }
    }
}
