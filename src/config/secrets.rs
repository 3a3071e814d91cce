//! Which keys of a table config hold secrets, and the config as it may be shown, with their
//! values masked. The one place that decides it: the stream map, `metadata.customConfigs` and
//! any other object, at any depth, go through [`is_secret_key`].
//!
//! A key is cut into words at `.`, `_`, `-`, digits and camelCase humps, case ignored
//! (`db.credentials` → db, credentials; `SASToken` → sas, token). It names a secret when:
//! - one of its words is one of [`SECRET_WORDS`]: secret(s), password(s), passwd, passphrase,
//!   pass, pwd, token(s), credential(s), creds, auth, authorization, jaas (Kafka's
//!   `sasl.jaas.config` holds a password). A word that ends with one of these of five letters or
//!   more counts too, for glued names (`dbpassword`, `sastoken`, `clientsecret`); the short
//!   ones must stand alone so that `bypass` or `compass` stay readable;
//! - or its words hold both words of one of [`SECRET_PAIRS`], in any order, or one word glues
//!   them (`apikey`): api/access/private/secret/encryption/signing + key, external + id,
//!   connection + string. `key`, `id` and `string` alone are no secret: Pinot's `partitionKey`,
//!   `primaryKeyColumns` or a `keyColumn` must stay readable.
//!
//! The value of a secret key is masked; when it is an object or a list (`"credentials":
//! {"user": .., "pass": ..}`), every string and number inside it is. Booleans and nulls are
//! kept: they tell whether something is on, and hold nothing to hide.

use serde_json::Value;
use shoal_stream::secret::MASK;

/// Words that name a secret on their own.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "token",
    "tokens",
    "credential",
    "credentials",
    "creds",
    "auth",
    "authorization",
    "jaas",
];

/// Pairs of words that name a secret together, though neither does alone.
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("access", "key"),
    ("private", "key"),
    ("secret", "key"),
    ("encryption", "key"),
    ("signing", "key"),
    ("external", "id"),
    ("connection", "string"),
];

/// Shorter words must be a whole word: `bypass` is no `pass`.
const GLUED_MIN_LEN: usize = 5;

/// True for a key whose value must never be shown.
pub fn is_secret_key(key: &str) -> bool {
    let words = words(key);
    let named = |w: &str| {
        SECRET_WORDS.iter().any(|s| w == *s || (s.len() >= GLUED_MIN_LEN && w.ends_with(s)))
            || SECRET_PAIRS.iter().any(|(a, b)| w.ends_with(&format!("{a}{b}")))
    };
    words.iter().any(|w| named(w))
        || SECRET_PAIRS.iter().any(|(a, b)| words.iter().any(|w| w == a) && words.iter().any(|w| w == b))
}

/// A copy of the document with the value of every secret key masked, wherever it stands.
pub fn mask(doc: &Value) -> Value {
    match doc {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = if is_secret_key(key) { mask_all(value) } else { mask(value) };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        other => other.clone(),
    }
}

/// The value with every string and number in it masked, its shape kept.
fn mask_all(value: &Value) -> Value {
    match value {
        Value::String(_) | Value::Number(_) => Value::String(MASK.to_string()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), mask_all(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(mask_all).collect()),
        Value::Bool(_) | Value::Null => value.clone(),
    }
}

/// The lowercase words of a key: cut at anything but a letter, and before a capital that
/// starts a word (`apiKey` → api, key; `SASToken` → sas, token).
fn words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphabetic() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let starts_word = c.is_uppercase()
            && i > 0
            && (chars[i - 1].is_lowercase()
                || (chars[i - 1].is_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_lowercase())));
        if starts_word && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_follow_separators_and_humps() {
        assert_eq!(words("db.credentials"), ["db", "credentials"]);
        assert_eq!(words("SASToken"), ["sas", "token"]);
        assert_eq!(words("apiKey"), ["api", "key"]);
        assert_eq!(words("API_KEY"), ["api", "key"]);
        assert_eq!(words("s3-accessKey2"), ["s", "access", "key"]);
    }

    #[test]
    fn secret_names_in_any_spelling() {
        for key in [
            "secret",
            "secretKey",
            "password",
            "passwd",
            "pass",
            "pwd",
            "token",
            "accessToken",
            "sessionToken",
            "apiKey",
            "api_key",
            "API-KEY",
            "apikey",
            "key.api",
            "privateKey",
            "accessKey",
            "AWS_ACCESS_KEY_ID",
            "credential",
            "credentials",
            "db.credentials",
            "credentials.db",
            "auth",
            "authorization",
            "externalId",
            "id.external",
            "sasToken",
            "SASToken",
            "connectionString",
            "ConnectionString",
            "smtp_password",
            "dbpassword",
            "clientSecret",
            "sasl.jaas.config",
            "basic.auth.user.info",
            "stream.kafka.ssl.keystore.password",
        ] {
            assert!(is_secret_key(key), "{key} should be a secret");
        }
    }

    #[test]
    fn look_alikes_stay_readable() {
        for key in [
            "key",
            "partitionKey",
            "keyColumn",
            "primaryKeyColumns",
            "sortedColumn",
            "stream.kinesis.topic.name",
            "stream.kinesis.consumer.factory.class.name",
            "stream.kinesis.consumer.prop.auto.offset.reset",
            "iamRoleBasedAccessEnabled",
            "roleSessionName",
            "sessionDurationSeconds",
            "tokenizer",
            "bypass",
            "author",
            "id",
            "connection",
            "timeColumnName",
        ] {
            assert!(!is_secret_key(key), "{key} should be readable");
        }
    }

    #[test]
    fn masking_reaches_every_depth_and_keeps_shapes() {
        let doc = json!({
            "a": [{"name": "n", "apiKey": "k1"}],
            "db.credentials": {"user": "u1", "pass": "p1", "port": 5432, "tls": true, "extra": [ "x1" ]},
            "pwd": 1234,
            "token": null,
            "partitionKey": "visible",
        });
        assert_eq!(
            mask(&doc),
            json!({
                "a": [{"name": "n", "apiKey": "***"}],
                "db.credentials": {"user": "***", "pass": "***", "port": "***", "tls": true, "extra": ["***"]},
                "pwd": "***",
                "token": null,
                "partitionKey": "visible",
            })
        );
    }
}
