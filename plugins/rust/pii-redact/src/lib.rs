//! Map: redacts personal data in the string fields of a JSON value: e-mail addresses become
//! `[EMAIL]`, phone numbers `[PHONE]`, card numbers `[CARD]` (13 to 19 digits, spaces or dashes
//! between groups allowed, and only when the Luhn check passes, so order numbers and other
//! long numbers are left alone). JSON numbers of 13 to 19 digits that pass the Luhn check
//! become `"[CARD]"` as well.
//!
//! Config: `fields` — comma-separated dotted paths (`user.email, note`) to redact; default:
//! every string in the value. `kinds` — which of `email, phone, card` to redact (default all).
//! A value that is not JSON fails with `invalid-input`.
//!
//! Phone numbers: 9 to 15 digits, optionally starting with `+`, groups separated by spaces,
//! dashes, dots or parentheses, and not followed by `:` (so `2024-01-15 10:30` is a time,
//! not a phone number).
use std::sync::OnceLock;

use flowgate_sdk::{Config, Error, EventRef, ValueWriter};
use serde_json::Value;

struct Settings {
    fields: Option<Vec<Vec<String>>>,
    email: bool,
    phone: bool,
    card: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn setup(config: &Config) -> Result<(), Error> {
    let fields = config.get("fields").map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect()
    });
    let kinds: Vec<String> = config
        .get("kinds")
        .unwrap_or("email, phone, card")
        .split(',')
        .map(|k| k.trim().to_ascii_lowercase())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(bad) = kinds
        .iter()
        .find(|k| !["email", "phone", "card"].contains(&k.as_str()))
    {
        return Err(Error::fatal(format!(
            "config `kinds`: unknown kind `{bad}`; the kinds are email, phone, card"
        )));
    }
    let _ = SETTINGS.set(Settings {
        fields,
        email: kinds.iter().any(|k| k == "email"),
        phone: kinds.iter().any(|k| k == "phone"),
        card: kinds.iter().any(|k| k == "card"),
    });
    Ok(())
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// The e-mail address around the `@` at `at`, as a byte range.
fn email_at(s: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_local(s[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < s.len() && is_domain(s[end]) {
        end += 1;
    }
    // Trailing dots and dashes end a sentence, not a domain.
    while end > at + 1 && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &s[at + 1..end];
    let dot = domain.iter().rposition(|&c| c == b'.')?;
    let tld = &domain[dot + 1..];
    (start < at && dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
        .then_some((start, end))
}

/// A run of digits and separators starting at `i`: its end and its digits.
fn number_run(s: &[u8], i: usize) -> (usize, Vec<u8>) {
    let mut end = i;
    let mut digits = Vec::new();
    let mut last_digit = i;
    while end < s.len() {
        let c = s[end];
        if c.is_ascii_digit() {
            digits.push(c);
            last_digit = end + 1;
        } else if !matches!(c, b' ' | b'-' | b'.' | b'(' | b')') {
            break;
        } else if !matches!(c, b'(' | b')')
            && end + 1 < s.len()
            && matches!(s[end + 1], b' ' | b'-' | b'.')
        {
            // Two separators in a row end the number (a parenthesis and a space do not).
            break;
        }
        end += 1;
    }
    (last_digit, digits)
}

/// `text` with the enabled kinds of personal data replaced.
fn redact(text: &str, st: &Settings) -> Option<String> {
    let s = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    let mut changed = false;
    let replace = |out: &mut String, copied: &mut usize, from: usize, to: usize, with: &str| {
        out.push_str(&text[*copied..from]);
        out.push_str(with);
        *copied = to;
    };
    while i < s.len() {
        let c = s[i];
        if st.email
            && c == b'@'
            && let Some((from, to)) = email_at(s, i).filter(|(from, _)| *from >= copied)
        {
            replace(&mut out, &mut copied, from, to, "[EMAIL]");
            changed = true;
            i = to;
            continue;
        }
        let starts_number = (c.is_ascii_digit() || c == b'+' || c == b'(')
            && (i == 0 || !s[i - 1].is_ascii_alphanumeric());
        if (st.card || st.phone) && starts_number {
            let first = if c == b'+' || c == b'(' { i + 1 } else { i };
            let (end, digits) = number_run(s, first);
            let glued = end < s.len() && s[end].is_ascii_alphanumeric();
            if !glued && !digits.is_empty() {
                if st.card && (13..=19).contains(&digits.len()) && luhn(&digits) {
                    replace(&mut out, &mut copied, i, end, "[CARD]");
                    changed = true;
                    i = end;
                    continue;
                }
                let time_follows = end < s.len() && s[end] == b':';
                if st.phone && (9..=15).contains(&digits.len()) && !time_follows {
                    let formatted = c == b'+' || s[first..end].iter().any(|b| !b.is_ascii_digit());
                    if formatted {
                        replace(&mut out, &mut copied, i, end, "[PHONE]");
                        changed = true;
                        i = end;
                        continue;
                    }
                }
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    changed.then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

fn walk(v: &mut Value, st: &Settings) {
    match v {
        Value::String(s) => {
            if let Some(r) = redact(s, st) {
                *s = r;
            }
        }
        Value::Number(n) if st.card => {
            let digits = n.to_string().into_bytes();
            if digits.iter().all(u8::is_ascii_digit)
                && (13..=19).contains(&digits.len())
                && luhn(&digits)
            {
                *v = Value::String("[CARD]".into());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, st)),
        Value::Object(o) => o.values_mut().for_each(|x| walk(x, st)),
        _ => {}
    }
}

#[flowgate_sdk::map(init = setup)]
fn pii_redact(event: &EventRef, out: &mut ValueWriter) -> Result<(), Error> {
    let st = SETTINGS
        .get()
        .ok_or_else(|| Error::fatal("init did not run"))?;
    let mut value: Value = serde_json::from_slice(event.value)?;
    match &st.fields {
        None => walk(&mut value, st),
        Some(paths) => {
            for path in paths {
                let mut at = Some(&mut value);
                for part in path {
                    at = at.and_then(|v| v.get_mut(part.as_str()));
                }
                if let Some(v) = at {
                    walk(v, st);
                }
            }
        }
    }
    serde_json::to_writer(out, &value).map_err(|e| Error::fatal(e.to_string()))
}
