//! The record of a store's last fill, `.fill/state/last-fill.json` (format `fill-last-fill/1`,
//! docs/json.md): written by `fill run`, `fill run --site` and `fill prefill` when a fill
//! ends (done, failed or interrupted), read by fill-server for `/metrics` and the status
//! page. Bounded on reading: a record that is too large or does not parse is no record.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// The record's format name.
pub const FORMAT: &str = "fill-last-fill/1";

/// The file's name in the store's state directory.
pub const FILE: &str = "last-fill.json";

/// Largest record read.
const MAX_BYTES: u64 = 256 << 10;

/// How the fill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillOutcome {
    /// Everything it set out to fetch is in.
    Ok,
    /// It stopped on an error.
    Failed,
    /// Ctrl-c or SIGTERM; the same command resumes it.
    Interrupted,
}

impl FillOutcome {
    /// As in the record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What one source gave the fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFigures {
    /// The source's name (from the sources file).
    pub name: String,
    /// peer, tier, origin.
    pub kind: String,
    /// Verified bytes taken from it.
    pub bytes: u64,
    /// Their money.
    pub cost: f64,
    /// Quarantined (three bad blocks) during the fill.
    pub quarantined: bool,
}

/// The last fill of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastFill {
    /// [`FORMAT`].
    pub format: String,
    /// How it ended.
    pub outcome: FillOutcome,
    /// Unix seconds it began.
    pub started_at: i64,
    /// Unix seconds it ended.
    pub finished_at: i64,
    /// Unix seconds the last fill that ended `ok` ended (this one, or one before).
    pub last_success_at: Option<i64>,
    /// What the delta said to fetch.
    pub bytes_to_fetch: u64,
    /// Verified bytes fetched.
    pub bytes_fetched: u64,
    /// Money spent.
    pub cost: f64,
    /// Per source.
    pub sources: Vec<SourceFigures>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl Store {
    /// The record of the last fill, if there is a readable one.
    pub fn last_fill(&self) -> Option<LastFill> {
        let text = crate::bounded::read_text(&self.state_file(FILE), MAX_BYTES).ok()?;
        serde_json::from_str::<LastFill>(&text)
            .ok()
            .filter(|r| r.format == FORMAT)
    }

    /// Records `fill` as the last fill, carrying the last success over from the record
    /// before when this one did not succeed. Synced and renamed into place.
    pub fn record_last_fill(&self, mut fill: LastFill) -> Result<(), StoreError> {
        fill.format = FORMAT.to_owned();
        fill.last_success_at = match fill.outcome {
            FillOutcome::Ok => Some(fill.finished_at),
            _ => self.last_fill().and_then(|r| r.last_success_at),
        };
        let bytes = serde_json::to_vec_pretty(&fill).unwrap_or_default();
        self.write_state(FILE, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: FillOutcome, at: i64) -> LastFill {
        LastFill {
            format: String::new(),
            outcome,
            started_at: at - 10,
            finished_at: at,
            last_success_at: None,
            bytes_to_fetch: 100,
            bytes_fetched: 60,
            cost: 0.5,
            sources: vec![SourceFigures {
                name: "origin".into(),
                kind: "origin".into(),
                bytes: 60,
                cost: 0.5,
                quarantined: false,
            }],
            error: None,
        }
    }

    #[test]
    fn a_failure_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().join("s")).unwrap();
        assert_eq!(s.last_fill(), None);
        s.record_last_fill(record(FillOutcome::Ok, 1000)).unwrap();
        assert_eq!(s.last_fill().unwrap().last_success_at, Some(1000));
        s.record_last_fill(record(FillOutcome::Interrupted, 2000))
            .unwrap();
        let r = s.last_fill().unwrap();
        assert_eq!(
            (r.outcome, r.finished_at, r.last_success_at),
            (FillOutcome::Interrupted, 2000, Some(1000))
        );
        // A record that is not one is no record.
        std::fs::write(s.state_file(FILE), b"{\"format\":\"other\"}").unwrap();
        assert_eq!(s.last_fill(), None);
        std::fs::write(s.state_file(FILE), vec![b' '; 300 << 10]).unwrap();
        assert_eq!(s.last_fill(), None);
    }
}
