//! Files for file inputs from S3 (`s3://bucket/key`): fetched into a cache directory with the
//! standard credential chain, and fetched again only when the object's ETag has changed. When
//! S3 cannot be reached, a copy already cached is played (with a warning), so a box that loses
//! its uplink keeps its loop.

use std::path::{Path, PathBuf};

use aws_config::{BehaviorVersion, Region};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::AwsSettings;

/// Larger objects are refused: a file input is a loop or a clip, not an archive.
pub const MAX_OBJECT_BYTES: u64 = 8 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not an s3://bucket/key URL")]
    Url(String),
    #[error(
        "cannot read {url} from S3: {reason} (check the bucket, the key and the box's AWS credentials)"
    )]
    Read { url: String, reason: String },
    #[error("{url} is {size} bytes, more than the {MAX_OBJECT_BYTES} a file input may be")]
    TooLarge { url: String, size: u64 },
    #[error("cannot write the cached copy {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// S3 objects cached in one directory.
#[derive(Debug, Clone)]
pub struct S3Files {
    client: aws_sdk_s3::Client,
    cache: PathBuf,
}

impl S3Files {
    /// A client for `[aws]` when the box has one (its region, profile and endpoint), else for
    /// the standard chain alone (`AWS_REGION`, the shared config, an instance role).
    pub async fn load(settings: Option<&AwsSettings>, cache: PathBuf) -> S3Files {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(settings) = settings {
            loader = loader.region(Region::new(settings.region.clone()));
            if let Some(profile) = &settings.profile {
                loader = loader.profile_name(profile);
            }
            if let Some(url) = &settings.endpoint_url {
                loader = loader.endpoint_url(url);
            }
        }
        let config = loader.load().await;
        // Path-style addressing: bucket names with dots, and local endpoints, need it.
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        S3Files {
            client: aws_sdk_s3::Client::from_conf(s3),
            cache,
        }
    }

    /// The local copy of `url`, fetched first when there is none or the object has changed.
    pub async fn fetch(&self, url: &str) -> Result<PathBuf, FetchError> {
        let (bucket, key) = object(url).ok_or_else(|| FetchError::Url(url.to_string()))?;
        let (path, etag_path) = self.cached(url, key);
        let cached_etag = tokio::fs::read_to_string(&etag_path).await.ok();
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                let reason = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                if cached_etag.is_some() && path.is_file() {
                    warn!(%url, "S3 cannot be reached ({reason}); playing the copy fetched earlier");
                    return Ok(path);
                }
                return Err(FetchError::Read {
                    url: url.to_string(),
                    reason,
                });
            }
        };
        let etag = head.e_tag().unwrap_or_default().to_string();
        if cached_etag.as_deref() == Some(etag.as_str()) && path.is_file() {
            return Ok(path);
        }
        let size = head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if size > MAX_OBJECT_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                size,
            });
        }
        info!(%url, bytes = size, "fetching the file from S3");
        self.download(url, bucket, key, &path).await?;
        write(&etag_path, etag.as_bytes()).await?;
        Ok(path)
    }

    /// Where `url` is kept: named by a digest of the URL, with the key's extension (GStreamer
    /// finds the format by content, but people browsing the directory by name).
    fn cached(&self, url: &str, key: &str) -> (PathBuf, PathBuf) {
        let digest = Sha256::digest(url.as_bytes());
        let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let extension = Path::new(key)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("bin");
        (
            self.cache.join(format!("{name}.{extension}")),
            self.cache.join(format!("{name}.etag")),
        )
    }

    /// Streams the object into a temporary file beside `path`, then moves it into place, so a
    /// half-fetched file is never played.
    async fn download(
        &self,
        url: &str,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<(), FetchError> {
        let read_error = |reason: String| FetchError::Read {
            url: url.to_string(),
            reason,
        };
        let cache_error = |source| FetchError::Cache {
            path: path.to_path_buf(),
            source,
        };
        tokio::fs::create_dir_all(&self.cache)
            .await
            .map_err(cache_error)?;
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| read_error(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        let partial = path.with_extension("part");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(cache_error)?;
        let mut body = object.body;
        let mut written = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| read_error(e.to_string()))?
        {
            written += chunk.len() as u64;
            if written > MAX_OBJECT_BYTES {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(FetchError::TooLarge {
                    url: url.to_string(),
                    size: written,
                });
            }
            file.write_all(&chunk).await.map_err(cache_error)?;
        }
        file.sync_all().await.map_err(cache_error)?;
        drop(file);
        tokio::fs::rename(&partial, path)
            .await
            .map_err(cache_error)?;
        Ok(())
    }
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    tokio::fs::write(path, bytes)
        .await
        .map_err(|source| FetchError::Cache {
            path: path.to_path_buf(),
            source,
        })
}

/// `(bucket, key)` of `s3://bucket/key`.
fn object(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}
