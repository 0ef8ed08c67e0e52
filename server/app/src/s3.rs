//! Checkpoints in an S3 bucket (or any S3-compatible server): [`S3Store`] implements the engine's
//! [`CheckpointStore`] with the AWS SDK.
//!
//! The engine calls the store from its own threads and expects answers synchronously, while the SDK is async. Each
//! store therefore owns a small tokio runtime: an operation is spawned onto it and the calling thread waits for the
//! result. Waiting with `futures::executor::block_on` (not `Runtime::block_on`) keeps that legal on any thread,
//! including a worker of another tokio runtime.
//!
//! Every operation is bounded by [`S3Settings::timeout_ms`] over at most two attempts, so an unreachable server
//! fails a checkpoint within seconds instead of holding it up.

use aws_config::BehaviorVersion;
use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use eddy_engine::checkpoint::{CheckpointStore, StoreError};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

/// Where and how to reach the bucket that keeps checkpoints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket's name.
    pub bucket: String,
    /// Put before every path to make an object key (`prefix + path`); end it with `/` to make it a folder.
    #[serde(default)]
    pub prefix: String,
    /// The server's URL, for S3-compatible servers (`http://127.0.0.1:9000`); AWS's own endpoint when absent (or
    /// `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region; when absent, `AWS_REGION` / `AWS_DEFAULT_REGION` or the AWS profile, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Addresses the bucket in the path (`endpoint/bucket/key`) instead of the host name, as most S3-compatible
    /// servers need.
    #[serde(default)]
    pub path_style: bool,
    /// The access key; when absent (with the secret), the usual AWS chain: environment, profile, web identity,
    /// container and instance credentials.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret key that goes with `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Longest time one operation may take, retry included (at most two attempts).
    #[serde(default = "S3Settings::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl S3Settings {
    fn default_timeout_ms() -> u64 {
        10_000
    }

    /// Settings for `bucket` with every other field at its default.
    pub fn new(bucket: impl Into<String>) -> S3Settings {
        S3Settings {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            timeout_ms: S3Settings::default_timeout_ms(),
        }
    }
}

// By hand, so that the secret never reaches a log line.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Checkpoints kept as objects of an S3 bucket, one object per path, under the settings' prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    region: String,
    runtime: OwnRuntime,
}

/// The store's own runtime, shut down without waiting when the store is dropped: dropping a runtime the usual way
/// panics when it happens inside another runtime.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl OwnRuntime {
    /// Runs `operation` on this runtime and waits for it on the calling thread, whatever that thread is.
    fn run<T: Send + 'static>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self.0.as_ref().ok_or_else(|| StoreError("the S3 store is shut down".into()))?;
        let handle = runtime.spawn(operation);
        futures::executor::block_on(handle).map_err(|e| StoreError(format!("an S3 operation did not finish: {e}")))?
    }
}

impl S3Store {
    /// A client for the bucket of `settings`. Nothing is sent yet: a wrong endpoint or missing bucket shows on the
    /// first operation (or [`S3Store::ensure_bucket`]).
    pub fn new(settings: &S3Settings) -> Result<S3Store, StoreError> {
        if settings.bucket.is_empty() {
            return Err(StoreError("S3 settings: `bucket` is empty".into()));
        }
        if settings.timeout_ms == 0 {
            return Err(StoreError("S3 settings: `timeout_ms` must be more than 0".into()));
        }
        let credentials = match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials::new(id, secret, None, None, "eddy-s3-settings")),
            (None, None) => None,
            _ => {
                return Err(StoreError(
                    "S3 settings: `access_key_id` and `secret_access_key` go together (or neither, for the AWS chain)"
                        .into(),
                ));
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the S3 client's threads: {e}")))?;
        let runtime = OwnRuntime(Some(runtime));

        let timeout = Duration::from_millis(settings.timeout_ms);
        // Instance metadata is left out of the region chain: off AWS it only adds a slow miss, and the default is
        // what the settings document.
        let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
            .or_else(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new())
            .or_else(Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            // rustls on ring, as reqwest has it, rather than the SDK's default second crypto library.
            .http_client(
                aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https(),
            )
            // Half the budget per connection attempt, so that a silent host still gets its second attempt.
            .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).connect_timeout(timeout / 2).build())
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let config = runtime.run(async move { Ok(loader.load().await) })?;
        let region = config.region().map_or_else(|| "us-east-1".to_string(), |r| r.to_string());
        let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(settings.path_style).build();
        Ok(S3Store {
            client: Client::from_conf(s3_config),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            region,
            runtime,
        })
    }

    /// Creates the bucket unless it exists (for local test servers; production buckets are made by their owners).
    pub fn ensure_bucket(&self) -> Result<(), StoreError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let region = self.region.clone();
        self.runtime.run(async move {
            let failed = |what: &str, cause: String| StoreError(format!("cannot {what} bucket s3://{bucket}: {cause}"));
            match client.head_bucket().bucket(&bucket).send().await {
                Ok(_) => return Ok(()),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {}
                Err(e) => return Err(failed("check", cause(&e))),
            }
            let mut create = client.create_bucket().bucket(&bucket);
            // us-east-1 is the one region that takes no location constraint.
            if region != "us-east-1" {
                let location = BucketLocationConstraint::from(region.as_str());
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder().location_constraint(location).build(),
                );
            }
            match create.send().await {
                Ok(_) => Ok(()),
                // Another process made it meanwhile.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you()) => Ok(()),
                Err(e) => Err(failed("create", cause(&e))),
            }
        })
    }

    fn key(&self, path: &str) -> Result<String, StoreError> {
        // The rule of the engine's local store, so that a path valid in one store is valid in the other.
        let valid = !path.is_empty()
            && path.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
        if !valid {
            return Err(StoreError(format!("invalid object path `{path}`")));
        }
        Ok(format!("{}{path}", self.prefix))
    }

    /// Every key that starts with `key_prefix`, following continuation tokens past the 1,000 keys of a page.
    /// Every key under `key_prefix`, with its size.
    async fn list_keys(client: Client, bucket: String, key_prefix: String) -> Result<Vec<(String, u64)>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&key_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| StoreError(format!("cannot list s3://{bucket}/{key_prefix}: {}", cause(&e))))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| Some((object.key()?.to_string(), object.size().unwrap_or(0).max(0) as u64))),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(keys),
            }
        }
    }
}

impl CheckpointStore for S3Store {
    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.key(path)?;
        let (client, bucket, body) = (self.client.clone(), self.bucket.clone(), ByteStream::from(bytes.to_vec()));
        self.runtime.run(async move {
            match client.put_object().bucket(&bucket).key(&key).body(body).send().await {
                Ok(_) => Ok(()),
                Err(e) => Err(StoreError(format!("cannot put s3://{bucket}/{key}: {}", cause(&e)))),
            }
        })
    }

    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(path)?;
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        self.runtime.run(async move {
            let failed = |cause: String| StoreError(format!("cannot get s3://{bucket}/{key}: {cause}"));
            let object = match client.get_object().bucket(&bucket).key(&key).send().await {
                Ok(object) => object,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
                Err(e) => return Err(failed(cause(&e))),
            };
            let body = object.body.collect().await.map_err(|e| failed(chain(&e)))?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (client, bucket, ours) = (self.client.clone(), self.bucket.clone(), self.prefix.clone());
        let key_prefix = format!("{ours}{prefix}");
        let keys = self.runtime.run(S3Store::list_keys(client, bucket, key_prefix))?;
        let mut paths: Vec<String> =
            keys.into_iter().filter_map(|(key, _)| key.strip_prefix(&ours).map(str::to_string)).collect();
        // S3 lists in UTF-8 byte order already; sorting keeps the promise for servers that do not.
        paths.sort();
        Ok(paths)
    }

    fn bytes_under(&self, prefix: &str) -> Result<u64, StoreError> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        let keys = self.runtime.run(S3Store::list_keys(client, bucket, format!("{}{prefix}", self.prefix)))?;
        Ok(keys.iter().map(|(_, size)| size).sum())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let paths = self.list(prefix)?;
        self.delete(&paths)
    }

    fn delete(&self, paths: &[String]) -> Result<(), StoreError> {
        let keys = paths.iter().map(|path| self.key(path)).collect::<Result<Vec<_>, _>>()?;
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        self.runtime.run(async move {
            let failed = |cause: String| StoreError(format!("cannot delete objects of s3://{bucket}: {cause}"));
            // DeleteObjects takes at most 1,000 keys a request.
            for chunk in keys.chunks(1000) {
                let objects = chunk
                    .iter()
                    .map(|key| ObjectIdentifier::builder().key(key).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(e.to_string()))?;
                let delete = Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(|e| failed(e.to_string()))?;
                let output = client
                    .delete_objects()
                    .bucket(&bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| failed(cause(&e)))?;
                // A batch succeeds as a request even when some keys were not deleted; those come back as errors.
                if let Some(error) = output.errors().first() {
                    let problem = format!(
                        "{} of {} key(s) not deleted, first {}: {}",
                        output.errors().len(),
                        chunk.len(),
                        error.key().unwrap_or("?"),
                        error.message().or(error.code()).unwrap_or("no reason given")
                    );
                    return Err(failed(problem));
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Why an SDK call failed, on one line: the service's code and message, or the chain of causes for transport
/// failures (connection refused, timeout).
fn cause<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = error {
        let status = service.raw().status().as_u16();
        let e = service.err();
        return match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            _ => format!("{} (HTTP {status})", chain(e)),
        };
    }
    chain(error)
}

/// An error and its sources, joined with `: `, skipping a source its parent already quotes.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_refuse_unknown_fields() {
        let settings: S3Settings = serde_json::from_str(r#"{"bucket": "b"}"#).expect("parse");
        assert_eq!(settings.prefix, "");
        assert_eq!(settings.endpoint, None);
        assert!(!settings.path_style);
        assert_eq!(settings.timeout_ms, 10_000);
        let wrong = serde_json::from_str::<S3Settings>(r#"{"bucket": "b", "path-style": true}"#);
        assert!(wrong.is_err_and(|e| e.to_string().contains("unknown field")));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let mut settings = S3Settings::new("b");
        settings.access_key_id = Some("AKIDEXAMPLE".into());
        settings.secret_access_key = Some("very-secret".into());
        let shown = format!("{settings:?}");
        assert!(shown.contains("AKIDEXAMPLE") && !shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn a_store_is_made_without_contacting_the_server() {
        let mut settings = S3Settings::new("checkpoints");
        settings.prefix = "eddy/".into();
        settings.endpoint = Some("http://127.0.0.1:9".into());
        settings.region = Some("eu-west-1".into());
        settings.access_key_id = Some("id".into());
        settings.secret_access_key = Some("secret".into());
        let store = S3Store::new(&settings).expect("store");
        assert_eq!(store.describe(), "s3://checkpoints/eddy/");
        assert_eq!(store.region, "eu-west-1");
        assert!(store.put("a//b", b"x").is_err_and(|e| e.0.contains("invalid object path")));

        settings.secret_access_key = None;
        assert!(S3Store::new(&settings).is_err_and(|e| e.0.contains("go together")));
        settings.bucket.clear();
        assert!(S3Store::new(&settings).is_err_and(|e| e.0.contains("bucket")));
    }
}
