//! Progress of a fill: bars on a terminal, a plain line every few seconds elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fill_core::source::Source;

/// Progress of a fill: on a terminal, a bar for the whole fill (bytes, rate, ETA) and one per
/// source (bytes, rate); elsewhere a plain log line every few seconds.
#[derive(Debug)]
pub struct Progress {
    total: indicatif::ProgressBar,
    per_source: Vec<indicatif::ProgressBar>,
    _multi: Option<indicatif::MultiProgress>,
    plain: std::sync::Mutex<Option<PlainProgress>>,
    /// Bytes counted per source so far, for whoever reports the fill while it runs.
    counted: Vec<AtomicU64>,
}

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct PlainProgress {
    started: Instant,
    last_line: Instant,
    done: u64,
    total: u64,
}

impl Progress {
    /// Bars for `bytes` from `sources` (drawn only when stderr is a terminal).
    pub fn new(bytes: u64, what: &str, sources: &[Source]) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self {
                total: indicatif::ProgressBar::hidden(),
                per_source: sources
                    .iter()
                    .map(|_| indicatif::ProgressBar::hidden())
                    .collect(),
                _multi: None,
                plain: std::sync::Mutex::new(Some(PlainProgress {
                    started: Instant::now(),
                    last_line: Instant::now(),
                    done: 0,
                    total: bytes,
                })),
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
            "{msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ));
        total.set_message(what.to_owned());
        let per_source = sources
            .iter()
            .map(|s| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style("  {msg:<10} {bytes} {bytes_per_sec}"));
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
            p.done += bytes;
            if p.last_line.elapsed() >= PLAIN_EVERY {
                p.last_line = Instant::now();
                let rate = p.done as f64 / p.started.elapsed().as_secs_f64().max(0.001);
                let eta = p.total.saturating_sub(p.done) as f64 / rate.max(1.0);
                eprintln!(
                    "fill: {} of {} ({:.0}%), {}/s, eta {eta:.0} s",
                    fill_core::size::format_size(p.done),
                    fill_core::size::format_size(p.total),
                    100.0 * p.done as f64 / p.total.max(1) as f64,
                    fill_core::size::format_size(rate as u64),
                );
            }
        }
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
