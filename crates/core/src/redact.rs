//! Keeping secrets out of what is shown: messages, logs, REST answers and the dashboard.
//!
//! Secrets reach Gearpump inside values: store URLs carry credentials in their query
//! (`s3://b/p?secret_access_key=…`) or user info (`webhdfs://user:pass@host`), and config keys
//! name passwords (`kafka.producer.sasl.password`). [`redact`] masks the first two wherever they
//! occur in a text; [`is_secret_key`] tells which config keys hold secrets whole.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Words that make a URL parameter's value a secret (matched in its lower-cased name).
const SECRET_PARAMS: [&str; 7] = ["secret", "password", "passwd", "token", "credential", "key", "signature"];

/// Words that make a config key's whole value a secret.
const SECRET_KEYS: [&str; 12] = [
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "jaas",
    "access_key",
    "access-key",
    "private",
    // The REST users' password hashes.
    "ui-security.admins",
    "ui-security.users",
    "ui-security.guests",
];

/// Whether the config key `key` holds a secret (its value is never shown).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|w| key.contains(w))
}

/// `value` of config key `key` as it may be shown: [`MASK`] for a secret key, else with
/// credentials in URLs masked.
pub fn shown_value<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    if is_secret_key(key) { Cow::Borrowed(MASK) } else { redact(value) }
}

/// `text` with the values of secret-looking URL parameters (`…key=`, `…secret=`, `…token=`,
/// `…password=`, …) and the passwords of URL user info (`scheme://user:pass@host`) masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains('=') && !text.contains("://") {
        return Cow::Borrowed(text);
    }
    // The two rules can expose each other's input (`://key=:pw@`): apply them until nothing
    // changes, so that what is shown is masked for good.
    let mut current = match mask_once(text) {
        Cow::Borrowed(_) => return Cow::Borrowed(text),
        Cow::Owned(s) => s,
    };
    // Each pass that changes something masks some of the text; it ends within its length.
    for _ in 0..text.len() {
        match mask_once(&current) {
            Cow::Borrowed(_) => break,
            Cow::Owned(s) => current = s,
        }
    }
    Cow::Owned(current)
}

/// One pass of both rules of [`redact`].
fn mask_once(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'=' {
            // The parameter's name: the identifier right before `=`.
            let start = text[..i]
                .char_indices()
                .rev()
                .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.'))
                .map_or(0, |(p, ch)| p + ch.len_utf8());
            let name = text[start..i].to_ascii_lowercase();
            if !name.is_empty() && SECRET_PARAMS.iter().any(|w| name.contains(w)) {
                let end = value_end(text, i + 1);
                out.push('=');
                if !matches!(&text[i + 1..end], "" | MASK) {
                    out.push_str(MASK);
                    changed = true;
                } else {
                    out.push_str(&text[i + 1..end]);
                }
                i = end;
                continue;
            }
        } else if c == b':' && text[i..].starts_with("://") {
            // `scheme://user:pass@host`: mask `pass`.
            let auth_start = i + 3;
            let auth_end = text[auth_start..]
                .find(|ch: char| ch == '/' || ch == '?' || ch == '#' || ch.is_whitespace() || ch == '"')
                .map_or(text.len(), |p| auth_start + p);
            if let Some(at) = text[auth_start..auth_end].rfind('@')
                && let Some(colon) = text[auth_start..auth_start + at].find(':')
                && !matches!(&text[auth_start + colon + 1..auth_start + at], "" | MASK)
            {
                out.push_str(&text[i..auth_start + colon + 1]);
                out.push_str(MASK);
                i = auth_start + at;
                changed = true;
                continue;
            }
        }
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

/// Where a parameter's value that starts at `from` ends (punctuation that ends a sentence
/// around it, as in "store s3://…?key=x: refused", is not part of it).
fn value_end(text: &str, from: usize) -> usize {
    let end = text[from..]
        .find(|ch: char| ch == '&' || ch == '"' || ch == '\'' || ch == ',' || ch == ';' || ch.is_whitespace())
        .map_or(text.len(), |p| from + p);
    from + text[from..end].trim_end_matches([':', '.', ')', ']', '}']).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked_and_the_rest_kept() {
        let url = "s3://b/p?endpoint=http://h:9000&region=us-east-1&access_key_id=AKID&secret_access_key=s3cr3t";
        assert_eq!(
            redact(url),
            "s3://b/p?endpoint=http://h:9000&region=us-east-1&access_key_id=***&secret_access_key=***"
        );
        let msg = format!("opening the checkpoint store {url}: connection refused");
        let shown = redact(&msg);
        assert!(!shown.contains("s3cr3t") && !shown.contains("AKID"), "{shown}");
        assert!(shown.ends_with("secret_access_key=***: connection refused"), "{shown}");
        assert_eq!(redact("webhdfs://alice:pw@nn:9870/x"), "webhdfs://alice:***@nn:9870/x");
        assert_eq!(redact("token=abc def"), "token=*** def");
        // Found by fuzzing: masking twice must change nothing the second time.
        for found in ["://key=#':@", "://key=:\0@", "://passwd=:=@/:&@/:&@/:&@/:&@"] {
            let once = redact(found).into_owned();
            assert_eq!(redact(&once), once, "{found:?}");
        }
        assert_eq!(redact(r#"{"url": "x?sasToken=q1"}"#), r#"{"url": "x?sasToken=***"}"#);
        for plain in ["no secrets here", "a=b&c=d", "http://host:80/path?x=1", "count=3 ü=4", ""] {
            assert!(matches!(redact(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn secret_config_keys_are_masked_whole() {
        assert!(is_secret_key("kafka.producer.sasl.password"));
        assert!(is_secret_key("gearpump.cluster.secret"));
        assert!(is_secret_key("kafka.consumer.sasl.jaas.config"));
        assert!(!is_secret_key("kafka.producer.key.serializer"));
        assert_eq!(shown_value("gearpump.cluster.secret", "hunter2"), MASK);
        assert_eq!(
            shown_value("state.checkpoint.store.rootpath", "s3://b?secret_access_key=x"),
            "s3://b?secret_access_key=***"
        );
        assert_eq!(shown_value("gearpump.hostname", "10.0.0.7"), "10.0.0.7");
    }
}
