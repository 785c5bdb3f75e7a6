//! Sources on object storage: an S3-compatible bucket (`s3://bucket/prefix`) or a local
//! directory (`file:///path`), read through the `object_store` crate. The keys are the
//! store's paths under the prefix (`content/<id>`, `outboard/<id>`, `catalog`), so a bucket
//! holding a published store is a source like any other: the planner, failover, verification,
//! rate caps and windows apply unchanged (docs/object-storage.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::net::NetError;

/// Settings of an object-storage source (`[[source]]` keys, or the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectSettings {
    /// AWS region (`region`, `AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server (`endpoint`, `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Allow plain HTTP to the endpoint (`allow_http`, `AWS_ALLOW_HTTP`).
    pub allow_http: Option<bool>,
}

/// How requests to object storage are retried and pooled (docs/object-storage.md).
fn client_options(timeout: Duration) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(Duration::from_secs(300))
        .with_pool_idle_timeout(Duration::from_secs(30))
        .with_pool_max_idle_per_host(64)
}

fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}

/// A bucket (or folder) and the prefix a store lives under.
#[derive(Debug)]
pub struct ObjectSource {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    url: String,
    /// ETag of each object read so far: later ranges must come from the same object.
    etags: Mutex<HashMap<String, String>>,
}

/// Refuses an `s3://` url when the environment gives no credentials, before any request:
/// without them `object_store` would ask an instance metadata service (a link-local address
/// on whatever network this runs on) and fail with an error about that, not about the
/// missing keys. Credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; a web
/// identity (`AWS_WEB_IDENTITY_TOKEN_FILE`) or container credentials
/// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`); a public bucket read unsigned
/// (`AWS_SKIP_SIGNATURE=true`); or, on a cloud instance with a role, the instance's
/// metadata service when `FILL_S3_INSTANCE_CREDENTIALS=1` says so.
fn check_credentials(url: &str) -> Result<()> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let yes = |k: &str| std::env::var(k).is_ok_and(|v| matches!(v.trim(), "1" | "true"));
    let (key, secret) = (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY"));
    if key != secret {
        bail!(
            "{url}: {} is set but {} is not",
            if key {
                "AWS_ACCESS_KEY_ID"
            } else {
                "AWS_SECRET_ACCESS_KEY"
            },
            if key {
                "AWS_SECRET_ACCESS_KEY"
            } else {
                "AWS_ACCESS_KEY_ID"
            }
        );
    }
    let other = set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || yes("AWS_SKIP_SIGNATURE")
        || yes("FILL_S3_INSTANCE_CREDENTIALS");
    if !(key || other) {
        bail!(
            "{url}: no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (or AWS_SKIP_SIGNATURE=true for a public bucket, or FILL_S3_INSTANCE_CREDENTIALS=1 \
             to use a cloud instance's role)"
        );
    }
    Ok(())
}

/// Whether `url` names object storage rather than an HTTP store.
pub fn is_object_url(url: &str) -> bool {
    url.starts_with("s3://") || url.starts_with("file://")
}

impl ObjectSource {
    /// Opens `url` (`s3://bucket/prefix` or `file:///abs/path`). Credentials come from
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; `settings` override the environment.
    pub fn open(url: &str, settings: &ObjectSettings, timeout: Duration) -> Result<Self> {
        let (store, prefix): (Arc<dyn ObjectStore>, Key) =
            if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    bail!("url {url:?}: no bucket (expected s3://bucket/prefix)");
                }
                check_credentials(url)?;
                // Client options first: the environment's (AWS_ALLOW_HTTP...) go on top.
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_client_options(client_options(timeout))
                    .with_retry(retry());
                for (key, value) in std::env::vars() {
                    if key.starts_with("AWS_")
                        && let Ok(k) = key
                            .to_ascii_lowercase()
                            .parse::<object_store::aws::AmazonS3ConfigKey>()
                    {
                        b = b.with_config(k, value);
                    }
                }
                b = b.with_bucket_name(bucket);
                if let Some(r) = &settings.region {
                    b = b.with_region(r);
                }
                if let Some(e) = &settings.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(h) = settings.allow_http {
                    b = b.with_allow_http(h);
                }
                let s3 = b.build().with_context(|| format!("cannot open {url}"))?;
                (Arc::new(s3), Key::from(prefix.trim_matches('/')))
            } else if let Some(path) = url.strip_prefix("file://") {
                if !path.starts_with('/') {
                    bail!("url {url:?}: a file:// url needs an absolute path (file:///srv/store)");
                }
                std::fs::create_dir_all(path).with_context(|| format!("cannot create {path}"))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .with_context(|| format!("cannot open {url}"))?;
                (Arc::new(local), Key::from(""))
            } else {
                bail!("url {url:?} is not object storage (s3://bucket/prefix or file:///path)");
            };
        Ok(Self {
            store,
            prefix,
            url: url.trim_end_matches('/').to_owned(),
            etags: Mutex::new(HashMap::new()),
        })
    }

    /// The key of a store path (`content/<id>`...).
    pub fn key(&self, rel: &str) -> Key {
        rel.split('/')
            .fold(self.prefix.clone(), |k, part| k.join(part))
    }

    fn error(&self, rel: &str, e: object_store::Error) -> NetError {
        let at = format!("{}/{rel}", self.url);
        match e {
            object_store::Error::NotFound { .. } => NetError::NotFound,
            object_store::Error::Precondition { .. } => NetError::Lied(format!(
                "{at}: the object changed while it was being read (ETag no longer matches)"
            )),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => NetError::Refused(format!(
                "{at}: the credentials are refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {e}"
            )),
            e => NetError::Transport(format!("{at}: {e}")),
        }
    }

    /// A whole small object, refusing more than `limit` bytes.
    pub async fn get_small(&self, rel: &str, limit: u64) -> Result<Bytes, NetError> {
        let r = self
            .store
            .get_opts(&self.key(rel), GetOptions::default())
            .await
            .map_err(|e| self.error(rel, e))?;
        if r.meta.size > limit {
            return Err(NetError::Lied(format!(
                "{}/{rel}: {} bytes, more than the {limit} expected",
                self.url, r.meta.size
            )));
        }
        r.bytes().await.map_err(|e| self.error(rel, e))
    }

    /// Starts a ranged read of bytes `offset..offset + len` of an object of `size` bytes: the
    /// object must have that size, the range must come back exactly (object_store returns
    /// the remainder when a range runs past the end), and after the first read of an object
    /// every range must come from the same version of it (`If-Match` on its ETag).
    pub async fn get_range(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, NetError>>, NetError> {
        let etag = self
            .etags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rel)
            .cloned();
        let opts = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            if_match: etag.clone(),
            ..GetOptions::default()
        };
        let r = self
            .store
            .get_opts(&self.key(rel), opts)
            .await
            .map_err(|e| self.error(rel, e))?;
        let at = format!("{}/{rel}", self.url);
        if r.meta.size != size {
            return Err(NetError::Lied(format!(
                "{at}: the object is {} bytes, the catalog says {size}",
                r.meta.size
            )));
        }
        if r.range != (offset..offset + len) {
            return Err(NetError::Lied(format!(
                "{at}: returned bytes {:?}, asked for {:?}",
                r.range,
                offset..offset + len
            )));
        }
        if etag.is_none()
            && let Some(tag) = &r.meta.e_tag
        {
            self.etags
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rel.to_owned(), tag.clone());
        }
        Ok(self.chunks(r, rel))
    }

    /// The bytes of an answer, chunk by chunk: a local object's through [`file_chunks`].
    fn chunks(
        &self,
        r: object_store::GetResult,
        rel: &str,
    ) -> BoxStream<'static, Result<Bytes, NetError>> {
        let at = format!("{}/{rel}", self.url);
        match r.payload {
            object_store::GetResultPayload::File(file, _) => file_chunks(file, r.range, at),
            object_store::GetResultPayload::Stream(chunks) => chunks
                .map(move |c| c.map_err(|e| NetError::Transport(format!("{at}: {e}"))))
                .boxed(),
        }
    }
}

/// Bytes read at once from a local object (a `file://` source). `object_store`'s own stream
/// of a local file reads 8 KiB per blocking task: a fill from a directory paid a hand-off to
/// the blocking pool and back every 8 KiB, about six times the CPU of the same fill over
/// HTTP (docs/benchmarks.md). A fresh buffer per chunk: reusing them measured worse (the
/// kernel's copy into a buffer the cache has lost cost more than zeroing a new one).
const FILE_CHUNK: u64 = 1 << 20;

/// `range` of an open local object, as a stream of chunks of up to [`FILE_CHUNK`] bytes, each
/// read on the blocking pool at its offset (`pread`; the file is the one `object_store`
/// opened and checked, so a later replacement of the path is not read). `at` names it in
/// errors.
fn file_chunks(
    file: std::fs::File,
    range: std::ops::Range<u64>,
    at: String,
) -> BoxStream<'static, Result<Bytes, NetError>> {
    let file = Arc::new(file);
    futures_util::stream::try_unfold(range.start, move |from| {
        let (file, at) = (file.clone(), at.clone());
        let end = range.end;
        async move {
            if from >= end {
                return Ok(None);
            }
            let len = (end - from).min(FILE_CHUNK) as usize;
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, from).map(|()| buf)
            })
            .await;
            match read {
                Ok(Ok(buf)) => Ok(Some((Bytes::from(buf), from + len as u64))),
                Ok(Err(e)) => Err(NetError::Transport(format!("{at}: at byte {from}: {e}"))),
                Err(e) => Err(NetError::Transport(format!("{at}: {e}"))),
            }
        }
    })
    .boxed()
}

/// What `fill store publish` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Published {
    /// Where.
    pub to: String,
    /// Complete files in the store's catalog.
    pub files: u64,
    /// Objects uploaded (content and outboards; the catalog is counted apart).
    pub uploaded: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Objects already there with the right size.
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Objects re-read and checked against their ids (with --verify).
    pub verified: u64,
}

/// Objects up to this size go in one PUT; larger ones in parts of this size.
const PART: usize = 16 << 20;
/// Uploads at once.
const PARALLEL: usize = 8;

impl ObjectSource {
    /// Uploads one file to `rel` unless an object of its size is already there; whether it
    /// uploaded.
    async fn upload(&self, rel: &str, path: &std::path::Path, size: u64) -> Result<bool> {
        use tokio::io::AsyncReadExt;
        let key = self.key(rel);
        match self.store.head(&key).await {
            Ok(meta) if meta.size == size => return Ok(false),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(anyhow::Error::from(self.error(rel, e))),
        }
        let at = || format!("{}/{rel}", self.url);
        if size as usize <= PART {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            self.store
                .put(&key, bytes.into())
                .await
                .map_err(|e| self.error(rel, e))
                .with_context(at)?;
            return Ok(true);
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.error(rel, e))
            .with_context(at)?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut f = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut buf = vec![0u8; PART];
        let result: Result<()> = async {
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4).await?;
                w.write(&buf[..n]);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                w.finish()
                    .await
                    .map_err(|e| self.error(rel, e))
                    .with_context(at)?;
                Ok(true)
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e.context(at()))
            }
        }
    }

    /// Re-reads `content/<id>` and checks it hashes to `id`, and that `outboard/<id>` is
    /// that file's outboard.
    async fn verify(&self, id: fill_core::ContentId, size: u64) -> Result<()> {
        let rel = format!("content/{id}");
        let r = self
            .store
            .get(&self.key(&rel))
            .await
            .map_err(|e| self.error(&rel, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut stream = self.chunks(r, &rel);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let got = fill_core::ContentId::from_bytes(*hasher.finalize().as_bytes());
        if n != size || got != id {
            bail!(
                "{}/{rel}: {n} bytes hashing to {got}, expected {size} bytes hashing to {id}",
                self.url
            );
        }
        let orel = format!("outboard/{id}");
        let ob = self
            .get_small(&orel, 32 + 32 * size.div_ceil(1024).max(1))
            .await?;
        fill_core::Outboard::parse(&ob, id)
            .map_err(|e| anyhow::anyhow!("{}/{orel}: {e}", self.url))?;
        Ok(())
    }
}

/// `fill store publish`: uploads a store's complete files and outboards (in parallel, large
/// ones in parts, skipping objects already there with the right size), then its catalog,
/// last, so a reader never sees a catalog naming missing content. With `verify`, re-reads
/// every object and checks it against its id.
pub async fn publish(
    store: &fill_store::store::Store,
    to: &str,
    verify: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Published> {
    let dest = Arc::new(ObjectSource::open(
        to,
        &ObjectSettings::default(),
        Duration::from_secs(30),
    )?);
    let cat_file = store.catalog()?;
    let cat = cat_file.validate()?;
    let mut report = Published {
        to: dest.url.clone(),
        files: cat.len() as u64,
        ..Published::default()
    };
    let mut work = Vec::with_capacity(cat.len() * 2);
    for i in 0..cat.len() {
        let id = cat.id(i);
        let ob = store.outboard_path(&id);
        let ob_size = std::fs::metadata(&ob)
            .with_context(|| format!("outboard of {id} missing: run fill store verify"))?
            .len();
        work.push((
            format!("content/{id}"),
            store.content_path(&id),
            cat.size(i),
        ));
        work.push((format!("outboard/{id}"), ob, ob_size));
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (rel, path, size) in work {
        let (dest, limit) = (dest.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            dest.upload(&rel, &path, size).await.map(|up| (up, size))
        });
    }
    while let Some(r) = set.join_next().await {
        let (up, size) = r.context("an upload task failed")??;
        if up {
            report.uploaded += 1;
            report.uploaded_bytes += size;
        } else {
            report.skipped += 1;
            report.skipped_bytes += size;
        }
        progress(size);
    }
    // The catalog last: everything it names is there.
    dest.store
        .put(
            &dest.key("catalog"),
            Bytes::copy_from_slice(cat_file.bytes()).into(),
        )
        .await
        .map_err(|e| dest.error("catalog", e))
        .with_context(|| format!("{}/catalog", dest.url))?;
    if verify {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..cat.len() {
            let (dest, limit, id, size) = (dest.clone(), limit.clone(), cat.id(i), cat.size(i));
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                dest.verify(id, size).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.context("a verify task failed")??;
            report.verified += 1;
        }
        let back = dest
            .get_small("catalog", fill_store::store::MAX_CATALOG_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("{}/catalog: {e}", dest.url))?;
        if back.as_ref() != cat_file.bytes() {
            bail!(
                "{}/catalog: reads back different from the store's",
                dest.url
            );
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `file://` source over `dir` holding `content/x` of `len` patterned bytes.
    fn local(dir: &std::path::Path, len: usize) -> (ObjectSource, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir_all(dir.join("content")).unwrap();
        std::fs::write(dir.join("content/x"), &data).unwrap();
        let url = format!("file://{}", dir.display());
        let src = ObjectSource::open(&url, &ObjectSettings::default(), Duration::from_secs(5));
        (src.unwrap(), data)
    }

    async fn read_all(
        mut body: BoxStream<'static, Result<Bytes, NetError>>,
    ) -> Result<Vec<Bytes>, NetError> {
        let mut chunks = Vec::new();
        while let Some(c) = body.next().await {
            chunks.push(c?);
        }
        Ok(chunks)
    }

    #[tokio::test]
    async fn a_local_range_comes_in_large_chunks_and_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let chunk = FILE_CHUNK as usize;
        let (src, data) = local(tmp.path(), 2 * chunk + 1000);
        let (from, to) = (5, 2 * chunk + 900);
        let body = src
            .get_range(
                "content/x",
                from as u64,
                (to - from) as u64,
                data.len() as u64,
            )
            .await
            .unwrap();
        let chunks = read_all(body).await.unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [chunk, chunk, to - from - 2 * chunk]);
        assert_eq!(chunks.concat(), data[from..to]);
    }

    #[tokio::test]
    async fn a_local_object_cut_short_while_read_is_an_error_naming_where() {
        let tmp = tempfile::tempdir().unwrap();
        let chunk = FILE_CHUNK as usize;
        let (src, data) = local(tmp.path(), 3 * chunk);
        let size = data.len() as u64;
        let mut body = src.get_range("content/x", 0, size, size).await.unwrap();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first, data[..chunk]);
        // Truncated in place (the open file sees it): the next chunk cannot be read whole.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path().join("content/x"))
            .unwrap();
        f.set_len(chunk as u64 + 10).unwrap();
        let err = read_all(body).await.unwrap_err().to_string();
        assert!(err.contains("content/x: at byte 1048576"), "{err}");
    }
}
