//! A pre-fill station reporting to the fleet's control plane (`fill prefill --report-to URL
//! --station-token FILE --serial S…`; docs/control-api.md, "Pre-fill"): before the fill,
//! each appliance's pre-fill starts (the control plane refuses an unknown serial or one
//! already shipped, and the fill does not start); while it runs, its progress every few
//! seconds; once done, the catalog of what each appliance holds (`PUT /api/catalogs/{id}`,
//! zstd, once per distinct catalog) and the last report naming it, which the price of
//! waiting is computed from.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use fill_store::control::call;
use hyper::Method;

/// How often progress is reported while the fill runs.
pub const EVERY: Duration = Duration::from_secs(5);

/// Where and as whom a station reports, and for which appliances.
#[derive(Debug, Clone)]
pub struct Station {
    url: String,
    token: String,
    serials: Vec<String>,
}

impl Station {
    /// Checks the flags: a control-plane URL, a token file holding a station's token, one
    /// serial per store.
    pub fn new(url: &str, token_file: &Path, serials: &[String], stores: usize) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if !url.starts_with("http://") || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("--report-to {url:?}: the control plane's http:// URL");
        }
        if serials.len() != stores {
            bail!(
                "--report-to needs one --serial per --store, in the same order ({} serials for {} stores)",
                serials.len(),
                stores
            );
        }
        if let Some(s) = serials.iter().find(|s| !fill_core::text::is_name(s)) {
            bail!("--serial {s:?}: 1 to 64 letters, digits, '-', '_' or '.'");
        }
        let token = fill_store::control::read_token(token_file).map_err(|e| {
            anyhow::anyhow!("--station-token {e} (`fill-control station add` makes one)")
        })?;
        Ok(Self {
            url: url.to_owned(),
            token,
            serials: serials.to_vec(),
        })
    }

    async fn prefill(&self, serial: &str, body: serde_json::Value) -> Result<(), String> {
        let url = format!("{}/api/appliances/{serial}/prefill", self.url);
        call(
            Method::POST,
            &url,
            &self.token,
            "application/json",
            Bytes::from(body.to_string()),
        )
        .await
        .map(|_| ())
    }

    /// Reports each appliance's progress: `done` bytes of `totals[i]`.
    pub async fn progress(&self, done: u64, totals: &[u64]) -> Result<(), String> {
        for (serial, &total) in self.serials.iter().zip(totals) {
            let body = serde_json::json!({"done_bytes": done.min(total), "total_bytes": total});
            self.prefill(serial, body).await?;
        }
        Ok(())
    }

    /// The end: each store's catalog kept by the control plane (once per distinct one),
    /// then each appliance's last report naming it.
    pub async fn finish(&self, catalogs: &[Vec<u8>], totals: &[u64]) -> Result<(), String> {
        let mut sent: Vec<String> = Vec::new();
        for ((serial, catalog), &total) in self.serials.iter().zip(catalogs).zip(totals) {
            let id = blake3::hash(catalog).to_hex().to_string();
            if !sent.contains(&id) {
                let url = format!("{}/api/catalogs/{id}", self.url);
                let body = Bytes::from(fill_core::catalog::wire::compress(catalog, 3));
                call(
                    Method::PUT,
                    &url,
                    &self.token,
                    "application/octet-stream",
                    body,
                )
                .await?;
                sent.push(id.clone());
            }
            let body =
                serde_json::json!({"done_bytes": total, "total_bytes": total, "catalog": id});
            self.prefill(serial, body).await?;
        }
        Ok(())
    }
}
