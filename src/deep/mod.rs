//! The deep store: every sealed segment as a Parquet object in object storage (S3, GCS, Azure,
//! or a local directory), with the table's config, schema and a deep-store manifest beside
//! them. It restores a table whose data directory is lost, holds the cold tier (segments
//! dropped from local disk, read from the store by queries), and is a lake other engines read.
//!
//! - `parquet.rs`: a segment's rows to a Parquet object and back;
//! - `manifest.rs`: the deep-store manifest, a prefix of the local one;
//! - `restore.rs`: a table's directory rebuilt from the store.
//!
//! Layout under the store's prefix:
//! `<table>/table.json` (secrets masked), `<table>/schema.json`, `<table>/manifest.json`,
//! `<table>/dt=<yyyy-MM-dd>/<segment>.parquet` (the UTC day of the segment's oldest row).

pub(crate) mod manifest;
pub(crate) mod parquet;
pub(crate) mod restore;

use crate::error::Error;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};
use shoal_stream::client::DefaultCredentials;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a deep store is and how to reach it.
///
/// S3 settings come from the standard AWS environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP=true` for a
/// plain-HTTP endpoint), credentials from the AWS default chain as for Kinesis; GCS and Azure
/// from their `GOOGLE_*` and `AZURE_*` variables. [`DeepStoreOptions::with_option`] sets the
/// same keys in code (they win over the environment).
///
/// ```
/// let store = shoal::DeepStoreOptions::new("s3://analytics/shoal")
///     .with_option("aws_region", "eu-west-1");
/// assert_eq!(store.url(), "s3://analytics/shoal");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DeepStoreOptions {
    url: String,
    options: Vec<(String, shoal_stream::Secret)>,
    /// Longest wait between two attempts of a failing upload (default 30 s; the first retry
    /// comes after 200 ms).
    pub retry_max: Duration,
    /// How long an object that no manifest names any more (its segment expired or was
    /// compacted) stays, for queries that took their snapshot before (default 2 minutes).
    pub delete_grace: Duration,
}

impl std::fmt::Debug for DeepStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepStoreOptions")
            .field("url", &redact_url(&self.url))
            .field("options", &self.options.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("retry_max", &self.retry_max)
            .field("delete_grace", &self.delete_grace)
            .finish()
    }
}

impl DeepStoreOptions {
    /// A deep store at `url`: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (or `abfss://…`), or `file:///absolute/path`.
    pub fn new(url: impl Into<String>) -> DeepStoreOptions {
        DeepStoreOptions {
            url: url.into(),
            options: Vec::new(),
            retry_max: Duration::from_secs(30),
            delete_grace: Duration::from_secs(120),
        }
    }

    /// Sets one of object_store's configuration keys for the URL's scheme (for S3:
    /// `aws_endpoint`, `aws_region`, `aws_allow_http`, `aws_access_key_id`, ...), over the
    /// environment. Values are never shown (they may be keys).
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> DeepStoreOptions {
        self.options.push((key.into(), shoal_stream::Secret::new(value)));
        self
    }

    /// Sets [`DeepStoreOptions::retry_max`].
    pub fn with_retry_max(mut self, retry_max: Duration) -> DeepStoreOptions {
        self.retry_max = retry_max;
        self
    }

    /// Sets [`DeepStoreOptions::delete_grace`].
    pub fn with_delete_grace(mut self, delete_grace: Duration) -> DeepStoreOptions {
        self.delete_grace = delete_grace;
        self
    }

    /// The store's URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// An open deep store: the object store and the prefix every table lives under.
#[derive(Clone)]
pub struct DeepStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    shown: String,
    /// The URL queries register the store under (unique per store in the process).
    pub(crate) query_url: String,
    pub(crate) retry_max: Duration,
    pub(crate) delete_grace: Duration,
}

impl std::fmt::Debug for DeepStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepStore").field("url", &self.shown).finish()
    }
}

/// The URL without credentials or query (a SAS token, a password): what logs and errors show.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.set_fragment(None);
            // One spelling per store: `s3://b/p/` is `s3://b/p`.
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

static STORES: AtomicU64 = AtomicU64::new(0);

impl DeepStore {
    /// Opens the store `options` names (nothing is read or written yet).
    pub async fn open(options: &DeepStoreOptions) -> Result<DeepStore, Error> {
        let shown = redact_url(&options.url);
        let bad = |reason: String| Error::DeepStore(format!("deep store {shown}: {reason}"));
        let url = url::Url::parse(&options.url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let (scheme, path) = ObjectStoreScheme::parse(&url)
            .map_err(|_| bad("unsupported scheme: use s3://, gs://, az://, abfss:// or file://".into()))?;
        let keys = options.options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.expose().to_string()));
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                let dir = std::path::PathBuf::from(url.path());
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?;
                return Ok(DeepStore {
                    store: Arc::new(fs),
                    prefix: ObjectPath::default(),
                    shown,
                    query_url: query_url(),
                    retry_max: options.retry_max,
                    delete_grace: options.delete_grace,
                });
            }
            ObjectStoreScheme::AmazonS3 => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
                for (key, value) in CLIENT {
                    b = b.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                let mut has_region = std::env::var_os("AWS_REGION").is_some()
                    || std::env::var_os("AWS_DEFAULT_REGION").is_some();
                let mut has_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
                for (k, v) in keys {
                    let key: AmazonS3ConfigKey =
                        k.parse().map_err(|_| bad(format!("{k:?} is not an S3 setting")))?;
                    has_region |= matches!(key, AmazonS3ConfigKey::Region);
                    has_keys |= matches!(key, AmazonS3ConfigKey::AccessKeyId);
                    b = b.with_config(key, v);
                }
                if !has_region {
                    let region = DefaultCredentials::region().await.unwrap_or_else(|| "us-east-1".into());
                    b = b.with_region(region);
                }
                if !has_keys && let Some(chain) = DefaultCredentials::load().await {
                    // The AWS default chain (profiles, SSO, web identity, instance roles), as
                    // the Kinesis client uses it.
                    b = b.with_credentials(Arc::new(ChainCredentials::new(chain)));
                }
                Arc::new(b.with_retry(retry()).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                for (key, value) in CLIENT {
                    b = b.with_config(GoogleConfigKey::Client(key), value);
                }
                for (k, v) in keys {
                    let key: GoogleConfigKey =
                        k.parse().map_err(|_| bad(format!("{k:?} is not a GCS setting")))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.with_retry(retry()).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (key, value) in CLIENT {
                    b = b.with_config(AzureConfigKey::Client(key), value);
                }
                for (k, v) in keys {
                    let key: AzureConfigKey =
                        k.parse().map_err(|_| bad(format!("{k:?} is not an Azure setting")))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.with_retry(retry()).build().map_err(|e| bad(e.to_string()))?)
            }
            _ => return Err(bad("unsupported scheme: use s3://, gs://, az://, abfss:// or file://".into())),
        };
        Ok(DeepStore {
            store,
            prefix: path,
            shown,
            query_url: query_url(),
            retry_max: options.retry_max,
            delete_grace: options.delete_grace,
        })
    }

    /// The store's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// `<prefix>/<table>/<rest>`.
    pub(crate) fn path(&self, table: &str, rest: &str) -> ObjectPath {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_string()).collect();
        parts.push(table.to_string());
        parts.extend(rest.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        ObjectPath::from_iter(parts)
    }

    /// The key (under the prefix) of a segment's object.
    pub(crate) fn segment_key(table: &str, file: &str, oldest_ms: i64) -> String {
        let name = file.strip_suffix(".seg").unwrap_or(file);
        let day = shoal_segment::datetime::JavaDatePattern::parse("yyyy-MM-dd")
            .map(|p| p.format_millis(oldest_ms))
            .unwrap_or_else(|_| "1970-01-01".into());
        format!("{table}/dt={day}/{name}.parquet")
    }

    /// The path of a key made by [`DeepStore::segment_key`].
    pub(crate) fn key_path(&self, key: &str) -> ObjectPath {
        let (table, rest) = key.split_once('/').unwrap_or((key, ""));
        self.path(table, rest)
    }

    /// Writes an object whole.
    pub(crate) async fn put(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), Error> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(&format!("writing {path}"), e))
    }

    /// Reads an object whole; None when it does not exist.
    pub(crate) async fn get(&self, path: &ObjectPath) -> Result<Option<Bytes>, Error> {
        match self.store.get(path).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.error(&format!("reading {path}"), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(&format!("reading {path}"), e)),
        }
    }

    /// Deletes an object (one already gone is fine).
    pub(crate) async fn delete(&self, path: &ObjectPath) -> Result<(), Error> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&format!("deleting {path}"), e)),
        }
    }

    /// Every object under `<prefix>/<table>/`.
    pub(crate) async fn list_table(&self, table: &str) -> Result<Vec<ObjectPath>, Error> {
        use futures::TryStreamExt;
        let prefix = self.path(table, "");
        self.store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error(&format!("listing {prefix}"), e))
    }

    /// The tables the store holds (those with a manifest).
    pub(crate) async fn tables(&self) -> Result<Vec<String>, Error> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.error(&format!("listing {}", self.prefix), e))?;
        let mut names = Vec::new();
        for dir in listed.common_prefixes {
            let Some(name) = dir.filename() else { continue };
            let manifest = self.path(name, "manifest.json");
            match self.store.head(&manifest).await {
                Ok(_) => names.push(name.to_string()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(&format!("reading {manifest}"), e)),
            }
        }
        Ok(names)
    }

    fn error(&self, what: &str, e: object_store::Error) -> Error {
        // The causes too (a refused connection, a TLS failure): object_store's own message
        // often stops at "HTTP error".
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            cause = c.source();
        }
        Error::DeepStore(format!("deep store {}: {what}: {text}", self.shown))
    }
}

fn query_url() -> String {
    format!("shoal-deep-{}://store", STORES.fetch_add(1, Ordering::Relaxed))
}

/// Each request is retried briefly; an upload that still fails is retried by the uploader with
/// its own backoff, so a store outage never holds a request for minutes.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
        ..object_store::RetryConfig::default()
    }
}

/// Connection and request timeouts, set before the environment's and the caller's settings
/// (which win).
const CLIENT: [(object_store::ClientConfigKey, &str); 2] =
    [(object_store::ClientConfigKey::ConnectTimeout, "5s"), (object_store::ClientConfigKey::Timeout, "60s")];

/// S3 credentials from the AWS default chain, kept until five minutes before they expire.
#[derive(Debug)]
struct ChainCredentials {
    chain: DefaultCredentials,
    cached:
        tokio::sync::Mutex<Option<(Arc<object_store::aws::AwsCredential>, Option<std::time::SystemTime>)>>,
}

impl ChainCredentials {
    fn new(chain: DefaultCredentials) -> ChainCredentials {
        ChainCredentials { chain, cached: tokio::sync::Mutex::new(None) }
    }
}

#[async_trait]
impl object_store::CredentialProvider for ChainCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<object_store::aws::AwsCredential>> {
        let mut cached = self.cached.lock().await;
        let fresh = |expires: &Option<std::time::SystemTime>| {
            expires.is_none_or(|t| t > std::time::SystemTime::now() + Duration::from_secs(300))
        };
        if let Some((c, expires)) = cached.as_ref()
            && fresh(expires)
        {
            return Ok(Arc::clone(c));
        }
        let keys = self
            .chain
            .keys()
            .await
            .map_err(|e| object_store::Error::Generic { store: "S3", source: e.into() })?;
        let credential = Arc::new(object_store::aws::AwsCredential {
            key_id: keys.access_key.expose().to_string(),
            secret_key: keys.secret_key.expose().to_string(),
            token: keys.session_token.map(|t| t.expose().to_string()),
        });
        *cached = Some((Arc::clone(&credential), keys.expires));
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_and_settings_are_refused_by_name() {
        let err = |o: DeepStoreOptions| async move { DeepStore::open(&o).await.unwrap_err().to_string() };
        assert!(err(DeepStoreOptions::new("not a url")).await.contains("not a URL"));
        assert!(err(DeepStoreOptions::new("ftp://host/x")).await.contains("unsupported scheme"));
        let e = err(DeepStoreOptions::new("s3://b/p").with_option("aws_colour", "blue")).await;
        assert!(e.contains("\"aws_colour\" is not an S3 setting"), "{e}");
    }

    #[test]
    fn secrets_never_show() {
        let o = DeepStoreOptions::new("az://c/p?sig=SASSECRET")
            .with_option("aws_secret_access_key", "KEYSECRET")
            .with_option("azure_storage_account_key", "ACCOUNTSECRET");
        let shown = format!("{o:?}");
        for secret in ["SASSECRET", "KEYSECRET", "ACCOUNTSECRET"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(redact_url("s3://user:pass@bucket/p?token=x"), "s3://bucket/p");
    }

    #[tokio::test]
    async fn a_file_store_keeps_objects_under_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/lake", dir.path().display());
        let store = DeepStore::open(&DeepStoreOptions::new(url)).await.unwrap();
        let key = DeepStore::segment_key("t", "t__0__0__20261129T1200Z.seg", 86_400_000 * 2);
        assert_eq!(key, "t/dt=1970-01-03/t__0__0__20261129T1200Z.parquet");
        store.put(&store.key_path(&key), Bytes::from_static(b"x")).await.unwrap();
        assert!(dir.path().join("lake").join(&key).exists());
        assert_eq!(store.get(&store.key_path(&key)).await.unwrap().unwrap(), Bytes::from_static(b"x"));
        assert_eq!(store.tables().await.unwrap(), Vec::<String>::new(), "no manifest: no table");
        store.put(&store.path("t", "manifest.json"), Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(store.tables().await.unwrap(), ["t"]);
        store.delete(&store.key_path(&key)).await.unwrap();
        store.delete(&store.key_path(&key)).await.unwrap();
        assert!(store.get(&store.key_path(&key)).await.unwrap().is_none());
    }
}
