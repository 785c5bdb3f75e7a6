//! How each source of a run is reached: HTTP through one pooled client ([`Net`]), or
//! object storage (`s3://`, `file://`, through `crate::object`).

use std::time::Duration;

use bytes::Bytes;

use crate::net::{Body, Net, NetError};

/// How to reach each source of a run: HTTP through one pooled client, or object storage.
#[derive(Debug, Clone)]
pub struct Remotes {
    net: Net,
    objects: Vec<Option<std::sync::Arc<crate::object::ObjectSource>>>,
}

impl Remotes {
    /// Every source over HTTP.
    pub fn http(net: Net) -> Self {
        Self {
            net,
            objects: Vec::new(),
        }
    }

    /// The sources of `specs`: object storage for `s3://` and `file://` urls.
    pub fn open(specs: &[fill_store::sources::SourceSpec], net: Net) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let objects = specs
            .iter()
            .map(|s| {
                if crate::object::is_object_url(&s.source.url) {
                    let settings = crate::object::ObjectSettings {
                        region: s.object.region.clone(),
                        endpoint: s.object.endpoint.clone(),
                        allow_http: s.object.allow_http,
                    };
                    crate::object::ObjectSource::open(&s.source.url, &settings, net.timeout())
                        .map(|o| Some(std::sync::Arc::new(o)))
                        .with_context(|| format!("source {:?}", s.source.name))
                } else {
                    Ok(None)
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { net, objects })
    }

    /// The same sources, with another HTTP client (another timeout).
    pub fn with_net(&self, net: Net) -> Self {
        Self {
            net,
            objects: self.objects.clone(),
        }
    }

    /// How long a source may stay silent.
    pub fn timeout(&self) -> Duration {
        self.net.timeout()
    }

    fn object(&self, source: usize) -> Option<&crate::object::ObjectSource> {
        self.objects.get(source).and_then(|o| o.as_deref())
    }

    /// A whole small body at `rel` (`catalog`, `outboard/<id>`) of source `source`, whose
    /// base URL is `base`.
    pub async fn get_small(
        &self,
        source: usize,
        base: &str,
        rel: &str,
        zstd: bool,
        limit: u64,
    ) -> Result<Bytes, NetError> {
        match self.object(source) {
            Some(o) => o.get_small(rel, limit).await,
            None => {
                self.net
                    .get_small(&format!("{base}/{rel}"), zstd, limit)
                    .await
            }
        }
    }

    /// Starts a ranged read of `rel` (`content/<id>`), checked as [`Net::get_range`] does.
    pub async fn get_range(
        &self,
        source: usize,
        base: &str,
        rel: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<Body, NetError> {
        match self.object(source) {
            Some(o) => {
                let fut = o.get_range(rel, offset, len, size);
                match tokio::time::timeout(self.net.timeout(), fut).await {
                    Err(_) => Err(NetError::Transport(format!(
                        "{base}/{rel}: no answer within {:?}",
                        self.net.timeout()
                    ))),
                    Ok(r) => r.map(|chunks| Body::Stream {
                        chunks,
                        left: Bytes::new(),
                    }),
                }
            }
            None => self
                .net
                .get_range(&format!("{base}/{rel}"), offset, len, size)
                .await
                .map(Body::Http),
        }
    }
}
