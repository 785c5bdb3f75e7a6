//! Progress of a fill: bars on a terminal, a plain line every few seconds elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};

use fill_core::source::Source;

use crate::common::{PlainLine, Unit};

/// Progress of a fill: on a terminal, a bar for the whole fill (bytes, rate, ETA) and one per
/// source (bytes, rate); elsewhere a plain log line every few seconds.
#[derive(Debug)]
pub struct Progress {
    total: indicatif::ProgressBar,
    per_source: Vec<indicatif::ProgressBar>,
    _multi: Option<indicatif::MultiProgress>,
    plain: std::sync::Mutex<Option<PlainLine>>,
    /// Bytes counted per source so far, for whoever reports the fill while it runs.
    counted: Vec<AtomicU64>,
}

impl Progress {
    /// Bars for `bytes` from `sources` (drawn only when stderr is a terminal).
    pub fn new(bytes: u64, what: &str, sources: &[Source]) -> Self {
        use std::io::IsTerminal;
        let quiet = crate::common::QUIET.load(Ordering::Relaxed);
        if quiet || !std::io::stderr().is_terminal() {
            return Self {
                total: indicatif::ProgressBar::hidden(),
                per_source: sources
                    .iter()
                    .map(|_| indicatif::ProgressBar::hidden())
                    .collect(),
                _multi: None,
                plain: std::sync::Mutex::new(
                    (!quiet).then(|| PlainLine::new(what, bytes, Unit::Bytes)),
                ),
                counted: sources.iter().map(|_| AtomicU64::new(0)).collect(),
            };
        }
        let multi = indicatif::MultiProgress::new();
        let style = |t: &str| {
            indicatif::ProgressStyle::with_template(t)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ")
        };
        let total = multi.add(indicatif::ProgressBar::new(bytes));
        total.set_style(style(
            "{msg:<12} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}",
        ));
        total.set_message(what.to_owned());
        let per_source = sources
            .iter()
            .map(|s| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style("  {msg:<10} {decimal_bytes} {decimal_bytes_per_sec}"));
                bar.set_message(s.name.clone());
                bar
            })
            .collect();
        Self {
            total,
            per_source,
            _multi: Some(multi),
            plain: std::sync::Mutex::new(None),
            counted: sources.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts `bytes` more from `source`.
    pub fn inc(&self, source: usize, bytes: u64) {
        self.total.inc(bytes);
        if let Some(c) = self.counted.get(source) {
            c.fetch_add(bytes, Ordering::Relaxed);
        }
        if let Some(bar) = self.per_source.get(source) {
            bar.inc(bytes);
        }
        let mut plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plain.as_mut() {
            p.add(bytes);
        }
    }

    /// Tells the operator something (a wait, a source left out) once: above the bars on a
    /// terminal, as a plain line elsewhere; nothing with `-q`.
    pub fn say(&self, line: &str) {
        crate::common::say(self._multi.as_ref(), line);
    }

    /// Bytes counted so far, per source.
    pub fn counted(&self) -> Vec<u64> {
        self.counted
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Clears the bars.
    pub fn finish_and_clear(&self) {
        for bar in &self.per_source {
            bar.finish_and_clear();
        }
        self.total.finish_and_clear();
    }
}

/// Bars are cleared however the fill ends (an error, ctrl-c), never left half drawn.
impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_and_clear();
    }
}
