//! The fill machine following a site peer: a file the site plan copies from another
//! appliance waits for that appliance's blocks, takes each block once the peer holds it,
//! passes the peer over when it makes no progress for the patience, and counts what then
//! comes from outside as the plan's excess.

use std::sync::Arc;
use std::time::Duration;

use fill_core::delta::PartialFile;
use fill_core::fill::{
    Action, Event, FileNeed, FileSpec, Fill, FillConfig, FillSpec, Notice, OutboardFrom, Prepared,
    Request, StoreSpec, Time,
};
use fill_core::outboard::{BlockSize, Outboard};
use fill_core::source::{Source, SourceKind};

const BLOCK: u64 = 1024;
const ORIGIN: usize = 0;
const LANDER: usize = 1;
const OTHER: usize = 2;

fn source(name: &str, kind: SourceKind, cost: f64) -> Source {
    Source {
        name: name.into(),
        kind,
        url: format!("http://127.0.0.1/{name}"),
        cost_per_gib: cost,
        bandwidth_bps: 1 << 30,
        window: None,
        max_connections: 4,
    }
}

const CONFIG: FillConfig = FillConfig {
    blocks_per_request: 2,
    max_requests: 8,
    max_open_files: 2,
    commit_bytes: 1 << 20,
    commit_interval: Duration::from_millis(100),
    window_bytes: 1 << 20,
    transport_tries: 3,
    quarantine_after: 3,
    relay_patience: Duration::from_secs(5),
};

struct Run {
    fill: Fill,
    ob: Arc<Outboard>,
    data: Vec<u8>,
    now: Time,
    /// Requests made, in order: (source, first block, blocks).
    requests: Vec<(usize, u64, u64)>,
    notices: Vec<Notice>,
    watched: Option<Vec<usize>>,
    unwatched: bool,
}

impl Run {
    /// One file of `blocks` blocks, held whole by the origin, followed from `relay`.
    fn new(blocks: u64, relay: Vec<usize>) -> Self {
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 7 % 251) as u8).collect();
        let ob = Outboard::compute(&data, BlockSize::from_bytes(BLOCK).unwrap());
        let spec = FillSpec {
            sources: vec![
                source("origin", SourceKind::Origin, 5.0),
                source("oca-1", SourceKind::Peer, 0.0),
                source("oca-3", SourceKind::Peer, 0.0),
            ],
            stores: vec![StoreSpec::default()],
            files: vec![FileSpec {
                id: ob.id(),
                size: data.len() as u64,
                name: "title".into(),
                holders: vec![true, false, false],
                planned: Vec::new(),
                stores: vec![FileNeed {
                    store: 0,
                    first_fetch: 0,
                    resume: false,
                    older: None,
                }],
                relay,
                watch: vec![LANDER, OTHER],
            }],
        };
        let now = Time::from_unix_secs(1_800_000_000);
        Self {
            fill: Fill::new(spec, CONFIG, now),
            ob: Arc::new(ob),
            data,
            now,
            requests: Vec::new(),
            notices: Vec::new(),
            watched: None,
            unwatched: false,
        }
    }

    fn event(&mut self, e: Event) {
        self.fill.handle(e, self.now);
    }

    /// Carries out every action at once (requests answered in full, honestly).
    fn drain(&mut self) {
        while let Some(a) = self.fill.poll_action() {
            match a {
                Action::FetchOutboard { file, from, .. } => {
                    let result = match from {
                        OutboardFrom::Source(LANDER) => Ok(self.ob.to_bytes()),
                        _ => Err("404".to_string()),
                    };
                    self.event(Event::OutboardFetched { file, from, result });
                }
                Action::Prepare { file, store, .. } => {
                    let map =
                        PartialFile::empty(self.ob.id(), self.ob.size(), self.ob.block_size());
                    self.event(Event::Prepared {
                        file,
                        store,
                        result: Ok(Prepared { map, copied: 0 }),
                    });
                }
                Action::Request(r) => self.answer(r),
                Action::Sync { commit, .. } => self.event(Event::Synced {
                    commit,
                    result: Ok(()),
                }),
                Action::Record { commit, .. } | Action::Complete { commit, .. } => {
                    self.event(Event::Recorded {
                        commit,
                        result: Ok(()),
                    })
                }
                Action::Watch { sources, .. } => self.watched = Some(sources),
                Action::Unwatch { .. } => self.unwatched = true,
                Action::Notice(n) => self.notices.push(n),
                Action::Evict { id, .. } => self.event(Event::Evicted { id, result: Ok(()) }),
            }
        }
    }

    fn answer(&mut self, r: Request) {
        self.requests.push((r.source, r.first_block, r.blocks));
        for b in r.first_block..r.first_block + r.blocks {
            let (off, len) = self.ob.block_range(b);
            let block = &self.data[off as usize..(off + len) as usize];
            assert!(r.outboard.verify_block(b, block).is_ok());
            for &store in &r.writes[(b - r.first_block) as usize] {
                self.event(Event::Written {
                    file: r.file,
                    block: b,
                    store,
                    result: Ok(()),
                });
            }
        }
        self.event(Event::RequestEnded {
            request: r.id,
            verified: r.blocks,
            result: Ok(()),
        });
    }

    fn held(&mut self, source: usize, upto: u64) {
        let mut words = vec![0u64; self.ob.block_count().div_ceil(64) as usize];
        for b in 0..upto {
            words[(b / 64) as usize] |= 1 << (b % 64);
        }
        self.event(Event::BlocksHeld {
            source,
            file: 0,
            blocks: words,
        });
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
        self.fill.handle_timeout(self.now);
        self.drain();
    }

    fn bytes_from(&self, s: usize) -> u64 {
        self.fill.stats().sources[s].bytes
    }
}

#[test]
fn a_follower_takes_each_block_from_the_lander_as_it_lands() {
    let mut run = Run::new(8, vec![LANDER]);
    run.drain();
    assert_eq!(run.watched, Some(vec![LANDER, OTHER]));
    // Nothing is asked for before the lander holds it: not from the origin either.
    assert!(run.requests.is_empty(), "{:?}", run.requests);
    let wake = run
        .fill
        .poll_timeout()
        .expect("waits for the lander, bounded");
    assert_eq!(wake, run.now.plus(CONFIG.relay_patience));
    run.held(LANDER, 3);
    // Blocks 0-1 go as one request; block 2 alone (its request would reach block 3).
    assert_eq!(run.requests, vec![(LANDER, 0, 2)]);
    // Progress pushes the patience on: just before it runs out, the rest lands.
    run.advance(Duration::from_secs(4));
    run.held(LANDER, 8);
    run.advance(Duration::from_secs(4));
    run.held(LANDER, 8);
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(LANDER), 8 * BLOCK);
    assert_eq!(run.bytes_from(ORIGIN), 0);
    assert_eq!(run.fill.stats().excess_bytes, 0);
    assert!(run.unwatched);
    assert!(
        !run.notices
            .iter()
            .any(|n| matches!(n, Notice::PassedOver { .. }))
    );
}

#[test]
fn a_lander_without_progress_is_passed_over_and_the_next_followed() {
    let mut run = Run::new(6, vec![LANDER, OTHER]);
    run.drain();
    run.held(LANDER, 2);
    assert_eq!(run.requests, vec![(LANDER, 0, 2)]);
    // The lander stops. After the patience the fill follows the next appliance.
    run.advance(Duration::from_secs(6));
    assert!(
        run.notices.contains(&Notice::PassedOver {
            source: LANDER,
            file: 0
        }),
        "{:?}",
        run.notices
    );
    assert_eq!(
        run.requests.len(),
        1,
        "waits for the next peer, not the origin"
    );
    run.held(OTHER, 6);
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(OTHER), 4 * BLOCK);
    assert_eq!(run.bytes_from(ORIGIN), 0);
}

#[test]
fn with_every_peer_passed_over_the_rest_comes_from_outside_as_excess() {
    let mut run = Run::new(6, vec![LANDER]);
    run.drain();
    run.held(LANDER, 2);
    run.advance(Duration::from_secs(6));
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(LANDER), 2 * BLOCK);
    assert_eq!(run.bytes_from(ORIGIN), 4 * BLOCK);
    let stats = run.fill.stats();
    assert_eq!(stats.excess_bytes, 4 * BLOCK);
    assert_eq!(stats.sources[ORIGIN].excess_bytes, 4 * BLOCK);
}

#[test]
fn a_lander_fetches_from_outside_at_once_and_counts_no_excess() {
    let mut run = Run::new(4, Vec::new());
    run.drain();
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(ORIGIN), 4 * BLOCK);
    assert_eq!(run.fill.stats().excess_bytes, 0);
}

#[test]
fn a_block_another_watched_peer_already_holds_is_taken_from_it() {
    let mut run = Run::new(4, vec![LANDER]);
    run.drain();
    // The other appliance (which copied it before the lander stopped) holds it all.
    run.held(OTHER, 4);
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(OTHER), 4 * BLOCK);
    assert_eq!(run.bytes_from(ORIGIN), 0);
}

#[test]
fn bits_past_the_last_block_and_unwatched_sources_are_ignored() {
    let mut run = Run::new(3, vec![LANDER]);
    run.drain();
    // Block 3 does not exist; the origin is not watched.
    run.event(Event::BlocksHeld {
        source: ORIGIN,
        file: 0,
        blocks: vec![u64::MAX],
    });
    run.event(Event::BlocksHeld {
        source: LANDER,
        file: 0,
        blocks: vec![0b1000, u64::MAX],
    });
    run.drain();
    assert!(run.requests.is_empty(), "{:?}", run.requests);
}

#[test]
fn a_peer_that_holds_the_file_whole_is_used_at_once() {
    let mut run = Run::new(4, vec![LANDER]);
    run.event(Event::HoldingsChanged {
        source: LANDER,
        file: 0,
        holds: true,
    });
    run.drain();
    assert!(run.fill.is_finished(), "{:?}", run.fill.outcome());
    assert_eq!(run.bytes_from(LANDER), 4 * BLOCK);
    assert_eq!(run.bytes_from(ORIGIN), 0);
}
