//! The Kinesis client: region, endpoint override, and credentials (static keys from the table
//! config, else the default chain, optionally assuming a role through STS).

use crate::config::KinesisConfig;
use aws_config::BehaviorVersion;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_kinesis::config::Region;
use aws_smithy_http_client::tls;
use aws_smithy_types::timeout::TimeoutConfig;
use std::time::Duration;

/// The one HTTP client of the process: hyper 1 with rustls over ring (no aws-lc C build).
pub fn http_client() -> aws_sdk_kinesis::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// Builds a Kinesis client for `config`. `fetch_timeout` bounds the wait for an answer (from
/// sending the request to the answer's headers: the SDK's `read_timeout`), not the reading of
/// its body: a 10 MB page on a slow link is read to its end, and only a body that stalls
/// (below 1 byte/s for the grace period, the SDK's stalled-stream protection) is abandoned.
/// Retries are Shoal's own (see the reader), so the SDK's are off.
pub async fn kinesis_client(config: &KinesisConfig) -> aws_sdk_kinesis::Client {
    let region = Region::new(config.region.clone());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .http_client(http_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5).min(config.fetch_timeout))
                .read_timeout(config.fetch_timeout)
                .build(),
        )
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(config.fetch_timeout.max(Duration::from_secs(5)))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some(creds) = &config.credentials {
        tracing::warn!(
            stream = %config.stream_name,
            "using accessKey/secretKey from the table config: meant for trials; prefer the default credential chain"
        );
        loader = loader.credentials_provider(Credentials::new(
            creds.access_key.expose(),
            creds.secret_key.expose(),
            creds.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "shoal-table-config",
        ));
    } else if let Some(creds) = java_environment_credentials() {
        loader = loader.credentials_provider(creds);
    }
    let base = loader.load().await;
    let Some(role) = &config.assume_role else {
        return aws_sdk_kinesis::Client::new(&base);
    };
    let mut provider = aws_config::sts::AssumeRoleProvider::builder(role.role_arn.clone())
        .session_name(role.session_name.clone())
        .session_length(role.session_duration)
        .region(region)
        .configure(&base);
    if let Some(id) = &role.external_id {
        provider = provider.external_id(id.expose());
    }
    let provider = provider.build().await;
    let conf = aws_sdk_kinesis::config::Builder::from(&base)
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// The Java SDK's environment names `AWS_ACCESS_KEY`/`AWS_SECRET_KEY`, which Pinot users may
/// have set; the standard names (AWS_ACCESS_KEY_ID, ...) are read by the default chain.
fn java_environment_credentials() -> Option<Credentials> {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return None;
    }
    let access = std::env::var("AWS_ACCESS_KEY").ok().filter(|v| !v.is_empty())?;
    let secret = std::env::var("AWS_SECRET_KEY").ok().filter(|v| !v.is_empty())?;
    let token = std::env::var("AWS_SESSION_TOKEN").ok().filter(|v| !v.is_empty());
    Some(Credentials::new(access, secret, token, None, "java-environment"))
}

/// The AWS default credential chain (environment, profile files, SSO, web identity, the
/// container and instance endpoints), the same one Kinesis clients use, for other AWS clients
/// of the process (the deep store's S3). Its keys are handed out only as [`Secret`](crate::Secret)s.
#[derive(Debug, Clone)]
pub struct DefaultCredentials {
    provider: SharedCredentialsProvider,
}

/// One set of AWS credentials from [`DefaultCredentials`].
#[derive(Debug, Clone)]
pub struct AwsKeys {
    /// The access key id.
    pub access_key: crate::Secret,
    /// The secret access key.
    pub secret_key: crate::Secret,
    /// The session token, for temporary credentials.
    pub session_token: Option<crate::Secret>,
    /// When they expire (None: never).
    pub expires: Option<std::time::SystemTime>,
}

impl DefaultCredentials {
    /// Loads the default chain; None when it has no provider at all.
    pub async fn load() -> Option<DefaultCredentials> {
        let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
        let loader = match java_environment_credentials() {
            Some(creds) => loader.credentials_provider(creds),
            None => loader,
        };
        let config = loader.load().await;
        config.credentials_provider().map(|provider| DefaultCredentials { provider })
    }

    /// The region the default chain names (`AWS_REGION`, the profile), if any.
    pub async fn region() -> Option<String> {
        let config = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client()).load().await;
        config.region().map(|r| r.to_string())
    }

    /// Current credentials (the chain caches and refreshes them); the error names the provider
    /// that failed, never a key.
    pub async fn keys(&self) -> Result<AwsKeys, String> {
        use aws_credential_types::provider::ProvideCredentials;
        let c = self.provider.provide_credentials().await.map_err(|e| format!("AWS credentials: {e}"))?;
        Ok(AwsKeys {
            access_key: crate::Secret::new(c.access_key_id()),
            secret_key: crate::Secret::new(c.secret_access_key()),
            session_token: c.session_token().map(crate::Secret::new),
            expires: c.expiry(),
        })
    }
}
