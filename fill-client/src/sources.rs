//! What each source holds. The sources file itself is parsed by [`fill_store::sources`]
//! (the server reads it too, for its turn-up checks).

use anyhow::{Context, Result, bail};
use fill_core::ContentId;
use fill_core::source::SourceKind;
use fill_store::store::CatalogFile;

pub use fill_store::sources::{SourceSpec, check_url, load, single};

/// What a source holds.
#[derive(Debug)]
pub enum Holdings {
    /// An origin without a catalog: everything.
    All,
    /// The ids its catalog lists, sorted.
    Ids(Vec<ContentId>),
    /// Its catalog could not be had: nothing (the reason is reported).
    Unreachable(String),
}

impl Holdings {
    /// The ids a validated catalog file lists.
    pub fn from_catalog(file: &CatalogFile) -> Result<Self> {
        let cat = file.validate()?;
        Ok(Self::Ids((0..cat.len()).map(|i| cat.id(i)).collect()))
    }

    /// Whether the source holds `id`.
    pub fn holds(&self, id: &ContentId) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => ids.binary_search(id).is_ok(),
            Self::Unreachable(_) => false,
        }
    }
}

/// How each source of `specs` is reached, and what each holds: [`holdings`] on `rt`.
pub fn reach(
    specs: &[SourceSpec],
    rt: &tokio::runtime::Runtime,
) -> Result<(crate::remotes::Remotes, Vec<Holdings>)> {
    let remotes = crate::remotes::Remotes::open(specs, crate::net::Net::new())?;
    let holdings = rt.block_on(holdings(specs, &remotes))?;
    Ok((remotes, holdings))
}

/// Says, once and before the fill, which sources could not be reached: the fill goes on
/// without them (their holdings count as nothing), and the report notes them again.
pub fn say_unreachable(specs: &[SourceSpec], holdings: &[Holdings]) {
    for (spec, h) in specs.iter().zip(holdings) {
        if let Holdings::Unreachable(why) = h {
            let line = format!(
                "{} {:?} is unreachable ({why}): the fill goes on without it",
                spec.source.kind.name(),
                spec.source.name
            );
            tracing::info!("{line}");
            crate::common::say(None, &line);
        }
    }
}

/// What each source holds: its configured catalog file, else its `catalog` (HTTP `GET
/// {url}/catalog` with zstd, or the bucket's `catalog` object), else, for an origin,
/// everything. A peer or tier whose catalog cannot be had holds nothing for this run, and
/// says why; refused credentials fail loudly.
pub async fn holdings(
    specs: &[SourceSpec],
    remotes: &crate::remotes::Remotes,
) -> Result<Vec<Holdings>> {
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let s = &spec.source;
        let h = if let Some(path) = &spec.catalog {
            let file =
                CatalogFile::open(path).with_context(|| format!("source {:?}: catalog", s.name))?;
            Holdings::from_catalog(&file)
                .with_context(|| format!("source {:?}: catalog", s.name))?
        } else {
            let url = format!("{}/catalog", s.url);
            match remotes
                .get_small(
                    i,
                    &s.url,
                    "catalog",
                    true,
                    fill_store::store::MAX_REMOTE_CATALOG_BYTES,
                )
                .await
            {
                Ok(bytes) => match CatalogFile::from_bytes(Vec::from(bytes), &url)
                    .map_err(anyhow::Error::from)
                    .and_then(|f| Holdings::from_catalog(&f))
                {
                    Ok(h) => h,
                    Err(e) if s.kind == SourceKind::Origin => {
                        return Err(e.context(format!("origin {:?} serves a bad catalog", s.name)));
                    }
                    Err(e) => Holdings::Unreachable(format!("{e:#}")),
                },
                Err(crate::net::NetError::Refused(why)) => {
                    bail!("source {:?}: {why}", s.name);
                }
                Err(_) if s.kind == SourceKind::Origin => Holdings::All,
                // The error names the URL already.
                Err(e) => Holdings::Unreachable(e.to_string()),
            }
        };
        out.push(h);
    }
    Ok(out)
}
