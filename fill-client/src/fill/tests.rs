//! The driver against sources in memory (`edges::mem`) and a real store in a temp dir:
//! the machine's decisions as the real driver carries them out, without sockets.

use std::time::Duration;

use fill_core::catalog::{Catalog, CatalogBuilder};
use fill_core::source::{Source, SourceKind};
use fill_core::{ContentId, Outboard};
use fill_store::store::Store;

use super::edges::mem::{MemSource, MemSources, MemStore, MemWriter, Misbehaviour};
use super::{FillJob, FillReport, Progress, StoreJob, run_with};
use crate::sources::Holdings;
use crate::write::{Backend, Writer};

/// Three files of three 1 MiB blocks or so, distinct bytes.
fn files() -> Vec<Vec<u8>> {
    (0..3u64)
        .map(|k| {
            let mut rng = fill_core::rng::SplitMix64(k + 1);
            let len = (2 << 20) + 4321 * (k as usize + 1);
            let mut out = Vec::with_capacity(len + 8);
            while out.len() < len {
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            out.truncate(len);
            out
        })
        .collect()
}

fn source(name: &str, kind: SourceKind, cost: f64) -> Source {
    Source {
        name: name.into(),
        kind,
        url: format!("mem://{name}"),
        cost_per_gib: cost,
        bandwidth_bps: 10_000_000_000,
        window: None,
        max_connections: 4,
    }
}

/// The target catalog of `files`: most popular first, in order.
fn target_of(files: &[Vec<u8>]) -> Vec<u8> {
    let mut b = CatalogBuilder::new();
    for (i, f) in files.iter().enumerate() {
        b.push(
            ContentId::of(f),
            f.len() as u64,
            10.0 - i as f64,
            &format!("f{i}"),
        )
        .unwrap();
    }
    b.finish().unwrap()
}

/// A free peer and a paid origin.
fn two_sources() -> Vec<Source> {
    vec![
        source("peer", SourceKind::Peer, 0.0),
        source("origin", SourceKind::Origin, 0.02),
    ]
}

/// Runs `f` on a two-thread runtime, as `fill` does.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One fill of `store` to `target` along `sd`, from the sources in `mem`, within 30 s.
async fn drive<S: super::edges::StoreState, W: super::edges::BlockWriter>(
    target: &Catalog<'_>,
    sd: &crate::common::StoreDelta,
    store: &S,
    holdings: &[Holdings],
    mem: MemSources,
    writer: &W,
    verify_threads: usize,
) -> anyhow::Result<FillReport> {
    let sources = two_sources();
    let remotes = crate::remotes::Remotes::http(crate::net::Net::new());
    let stores = [StoreJob::of(store, sd)];
    let job = FillJob {
        stores: &stores,
        target,
        sources: &sources,
        holdings,
        timeout: mem.timeout,
        remotes: &remotes,
        routes: None,
        relays: None,
        verify_threads,
    };
    let progress = Progress::new(sd.delta.bytes_to_fetch, "test", &sources);
    tokio::time::timeout(
        Duration::from_secs(30),
        run_with(job, mem, writer, &progress),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the fill did not end within 30 s"))?
}

/// A target of `files` and an appliance store in a temp dir, filled as often as a test
/// likes (a rerun resumes from what the store durably holds).
struct Rig {
    target_bytes: Vec<u8>,
    store: Store,
    /// `--verify-threads` of its fills (0: each block verified as it is read).
    verify_threads: usize,
    _tmp: tempfile::TempDir,
}

impl Rig {
    fn new(files: &[Vec<u8>]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("app")).unwrap();
        store.create().unwrap();
        Self {
            target_bytes: target_of(files),
            store,
            verify_threads: 0,
            _tmp: tmp,
        }
    }

    /// One `fill run` of the store from a free peer and a paid origin in memory, writing
    /// through `writer` (positioned writes when none).
    fn run(
        &self,
        peer: MemSource,
        origin: MemSource,
        timeout: Duration,
        writer: Option<MemWriter>,
    ) -> anyhow::Result<FillReport> {
        let target = Catalog::parse(&self.target_bytes).unwrap();
        let store = &self.store;
        let sd = crate::common::compute_delta(&target, store, 1 << 40).unwrap();
        let holdings: Vec<Holdings> = [&peer, &origin]
            .iter()
            .map(|s| {
                let mut ids: Vec<ContentId> = s
                    .files
                    .keys()
                    .filter_map(|k| k.strip_prefix("content/"))
                    .map(|h| ContentId::parse(h).unwrap())
                    .collect();
                ids.sort();
                Holdings::Ids(ids)
            })
            .collect();
        let mem = MemSources {
            sources: vec![peer, origin],
            timeout,
        };
        block_on(async {
            match writer {
                Some(w) => {
                    drive(&target, &sd, store, &holdings, mem, &w, self.verify_threads).await
                }
                None => {
                    let dir = store.root().join(".fill/tmp");
                    let w = Writer::start(Backend::Pwrite, &dir).await?;
                    drive(&target, &sd, store, &holdings, mem, &w, self.verify_threads).await
                }
            }
        })
    }

    /// Bytes the store holds recorded: complete files and recorded blocks of partial ones.
    fn recorded_bytes(&self) -> u64 {
        let complete: u64 = self
            .store
            .catalog()
            .unwrap()
            .validate()
            .unwrap()
            .total_size();
        let partial: u64 = self
            .store
            .partials()
            .unwrap()
            .iter()
            .map(|p| p.file.verified_ranges().iter().map(|r| r.1).sum::<u64>())
            .sum();
        complete + partial
    }
}

/// Fills an empty store with `files` from a free peer and a paid origin in memory.
fn fill(
    files: &[Vec<u8>],
    peer: MemSource,
    origin: MemSource,
    timeout: Duration,
) -> (anyhow::Result<FillReport>, Store, Rig) {
    let rig = Rig::new(files);
    let r = rig.run(peer, origin, timeout, None);
    (r, rig.store.clone(), rig)
}

/// Every target file is in the store's content, each exactly its id.
fn assert_holds(store: &Store, files: &[Vec<u8>]) {
    let r = store.verify(false, &|_| {}).unwrap();
    assert!(r.bad.is_empty() && r.bad_blocks.is_empty(), "{r:?}");
    assert_eq!(r.checked, files.len() as u64);
    for f in files {
        assert_eq!(
            std::fs::read(store.content_path(&ContentId::of(f))).unwrap(),
            *f
        );
    }
}

fn all(files: &[Vec<u8>]) -> Vec<&[u8]> {
    files.iter().map(Vec::as_slice).collect()
}

#[test]
fn a_lying_peer_is_quarantined_and_the_origin_fills() {
    let f = files();
    let peer = MemSource::new("mem://peer", &all(&f), Misbehaviour::FlipsBytes);
    let origin = MemSource::new("mem://origin", &all(&f), Misbehaviour::Honest);
    let (r, store, _tmp) = fill(&f, peer, origin, Duration::from_secs(5));
    let r = r.unwrap();
    assert!(
        r.sources[0].bad_blocks >= 3 && r.sources[0].quarantined,
        "{r:?}"
    );
    // It flips a byte mid-body: each request's blocks before it verified and are kept, the
    // rest comes from the origin, and each byte is fetched once.
    let total: u64 = f.iter().map(|x| x.len() as u64).sum();
    assert!(r.sources[1].bytes > 0);
    assert_eq!(r.sources[0].bytes + r.sources[1].bytes, total, "{r:?}");
    assert_eq!(r.bytes_fetched, total);
    assert_holds(&store, &f);
}

#[test]
fn blocks_verified_ahead_on_verify_threads_are_written_in_order_and_kept() {
    // A lying peer flips a byte mid-body: with blocks read ahead of their verification,
    // the blocks before the bad one are still written and kept, the bad one and those read
    // after it are not, and each byte is fetched once in all.
    let f = files();
    let peer = MemSource::new("mem://peer", &all(&f), Misbehaviour::FlipsBytes);
    let origin = MemSource::new("mem://origin", &all(&f), Misbehaviour::Honest);
    let mut rig = Rig::new(&f);
    rig.verify_threads = 2;
    let r = rig.run(peer, origin, Duration::from_secs(5), None).unwrap();
    assert!(
        r.sources[0].bad_blocks >= 3 && r.sources[0].quarantined,
        "{r:?}"
    );
    let total: u64 = f.iter().map(|x| x.len() as u64).sum();
    assert!(
        r.sources[0].bytes > 0,
        "the peer's good blocks count: {r:?}"
    );
    assert_eq!(r.sources[0].bytes + r.sources[1].bytes, total, "{r:?}");
    assert_eq!(r.bytes_fetched, total);
    assert_holds(&rig.store, &f);
}

#[test]
fn a_stalling_peer_is_given_up_after_its_timeout() {
    let f = files();
    let peer = MemSource::new("mem://peer", &all(&f), Misbehaviour::Stalls(1000));
    let origin = MemSource::new("mem://origin", &all(&f), Misbehaviour::Honest);
    let (r, store, _tmp) = fill(&f, peer, origin, Duration::from_millis(200));
    let r = r.unwrap();
    assert!(r.sources[0].failed_requests >= 1, "{r:?}");
    assert!(!r.sources[0].quarantined, "a stall is not a lie");
    assert!(r.sources[1].bytes > 0 && r.retries >= 1, "{r:?}");
    assert_holds(&store, &f);
}

#[test]
fn a_truncating_peer_moves_its_ranges_on() {
    let f = files();
    let peer = MemSource::new("mem://peer", &all(&f), Misbehaviour::Truncates(1 << 20));
    let origin = MemSource::new("mem://origin", &all(&f), Misbehaviour::Honest);
    let (r, store, _tmp) = fill(&f, peer, origin, Duration::from_secs(5));
    let r = r.unwrap();
    // Each request's first block arrives whole and verifies; the rest moves on.
    assert!(
        r.sources[0].bytes >= 3 << 20 && r.sources[0].failed_requests >= 3,
        "{r:?}"
    );
    assert!(r.sources[1].bytes > 0);
    assert_eq!(
        r.bytes_fetched,
        f.iter().map(|x| x.len() as u64).sum::<u64>()
    );
    assert_holds(&store, &f);
}

#[test]
fn a_file_only_a_liar_holds_fails_the_fill_naming_it() {
    let f = files();
    let peer = MemSource::new("mem://peer", &all(&f), Misbehaviour::FlipsBytes);
    let origin = MemSource::new("mem://origin", &[&f[0], &f[2]], Misbehaviour::Honest);
    let (r, store, _tmp) = fill(&f, peer, origin, Duration::from_secs(5));
    let e = format!("{:#}", r.unwrap_err());
    let id = Outboard::compute(&f[1], fill_core::BlockSize::DEFAULT).id();
    assert!(
        e.contains("every source failed blocks") && e.contains(&id.to_string()),
        "{e}"
    );
    // What did verify is kept: nothing unverified was completed.
    let v = store.verify(false, &|_| {}).unwrap();
    assert!(v.bad.is_empty() && v.bad_blocks.is_empty(), "{v:?}");
}

fn honest(files: &[Vec<u8>]) -> (MemSource, MemSource) {
    (
        MemSource::new("mem://peer", &all(files), Misbehaviour::Honest),
        MemSource::new("mem://origin", &all(files), Misbehaviour::Honest),
    )
}

#[test]
fn a_full_disk_stops_the_fill_naming_the_block_and_a_rerun_completes() {
    // With each block verified as it is read, and with blocks verified ahead on 3 threads.
    for verify_threads in [0, 3] {
        full_disk_then_rerun(verify_threads);
    }
}

fn full_disk_then_rerun(verify_threads: usize) {
    let f = files();
    let mut rig = Rig::new(&f);
    rig.verify_threads = verify_threads;
    let w = MemWriter::default();
    w.fail_write(5, "No space left on device (os error 28)");
    let (peer, origin) = honest(&f);
    let e = format!(
        "{:#}",
        rig.run(peer, origin, Duration::from_secs(5), Some(w))
            .unwrap_err()
    );
    assert!(
        e.contains("cannot write block") && e.contains("No space left on device"),
        "{e}"
    );
    // Kept for the store-health check.
    let errors = rig.store.write_errors().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].error.contains("No space left"), "{errors:?}");
    let (peer, origin) = honest(&f);
    let again = rig.run(peer, origin, Duration::from_secs(5), None).unwrap();
    assert!(again.files_completed >= 1);
    assert_holds(&rig.store, &f);
}

#[test]
fn a_failed_sync_records_nothing_it_covered() {
    let f = files();
    let rig = Rig::new(&f);
    let w = MemWriter::default();
    w.fail_sync(1);
    let (peer, origin) = honest(&f);
    let e = format!(
        "{:#}",
        rig.run(peer, origin, Duration::from_secs(5), Some(w))
            .unwrap_err()
    );
    assert!(e.contains("cannot sync") && e.contains("os error 5"), "{e}");
    // The first commit's blocks were never durable: none of them is recorded.
    assert_eq!(rig.recorded_bytes(), 0);
    let (peer, origin) = honest(&f);
    rig.run(peer, origin, Duration::from_secs(5), None).unwrap();
    assert_holds(&rig.store, &f);
}

#[test]
fn after_a_crash_the_rerun_fetches_only_what_was_not_recorded() {
    let f = files();
    let total: u64 = f.iter().map(|x| x.len() as u64).sum();
    // Whether the crash comes before or after the first commit lands is the threads'
    // timing: the law holds either way, and it is checked until a crash has left
    // something recorded (bounded). Blocks go to the disk in batches: each file is one
    // write of its two whole blocks and one of its short tail, six writes in all.
    for attempt in 0..30 {
        let rig = Rig::new(&f);
        let w = MemWriter::default();
        // Power lost after 5 of the 6 writes: what was not synced is gone.
        w.crash_after_writes(5);
        let (peer, origin) = honest(&f);
        assert!(
            rig.run(peer, origin, Duration::from_secs(5), Some(w))
                .is_err()
        );
        let recorded = rig.recorded_bytes();
        assert!(recorded < total);
        let (peer, origin) = honest(&f);
        let again = rig.run(peer, origin, Duration::from_secs(5), None).unwrap();
        assert_eq!(again.bytes_fetched, total - recorded, "{again:?}");
        assert_holds(&rig.store, &f);
        if recorded > 0 {
            return;
        }
        assert!(attempt < 29, "no crash in 30 left anything recorded");
    }
}

#[test]
fn a_partial_outboard_torn_by_a_crash_is_written_again_when_the_fill_resumes() {
    let f = files();
    let rig = Rig::new(&f);
    let w = MemWriter::default();
    w.crash_after_writes(5);
    let (peer, origin) = honest(&f);
    assert!(
        rig.run(peer, origin, Duration::from_secs(5), Some(w))
            .is_err()
    );
    // Starting a partial file syncs nothing, so the crash may have torn its outboard.
    let partials = rig.store.partials().unwrap();
    assert!(!partials.is_empty(), "the crash left no partial file");
    for p in &partials {
        let hex = p.file.id.to_hex();
        let path = rig
            .store
            .root()
            .join(".fill/partial")
            .join(format!("{}.outboard", hex.as_str()));
        std::fs::write(&path, b"torn").unwrap();
        assert!(rig.store.partial_outboard(&p.file.id).is_err());
    }
    let (peer, origin) = honest(&f);
    rig.run(peer, origin, Duration::from_secs(5), None).unwrap();
    assert_holds(&rig.store, &f);
    for p in &partials {
        assert_eq!(rig.store.outboard(&p.file.id).unwrap().id(), p.file.id);
    }
}

/// One fill of a store in memory (its disk shared with `writer`), from `peer` and `origin`.
fn mem_run(
    files: &[Vec<u8>],
    store: &MemStore,
    writer: MemWriter,
    (peer, origin): (MemSource, MemSource),
) -> anyhow::Result<FillReport> {
    let target_bytes = target_of(files);
    let target = Catalog::parse(&target_bytes)?;
    let (held, partial) = store.inventory();
    let inv = fill_core::Inventory {
        complete: Catalog::parse(&held)?,
        partial: &partial,
    };
    let sd = crate::common::store_delta(&target, &inv, 1 << 40)?;
    let holdings = vec![Holdings::All, Holdings::All];
    let mem = MemSources {
        sources: vec![peer, origin],
        timeout: Duration::from_secs(5),
    };
    block_on(drive(&target, &sd, store, &holdings, mem, &writer, 0))
}

/// Bytes a store in memory holds recorded.
fn mem_recorded(store: &MemStore) -> u64 {
    let (held, partial) = store.inventory();
    let complete = Catalog::parse(&held).unwrap().total_size();
    let partial: u64 = partial
        .iter()
        .map(|p| p.verified_ranges().iter().map(|r| r.1).sum::<u64>())
        .sum();
    complete + partial
}

#[test]
fn all_in_memory_a_crash_keeps_what_was_durable_and_the_rerun_completes() {
    let f = files();
    let total: u64 = f.iter().map(|x| x.len() as u64).sum();
    // The store in memory refuses any record whose blocks' bytes are not durable, so a
    // commit that recorded before its sync would fail here; the crash's timing decides
    // whether anything was recorded, checked until a crash has left something (bounded).
    for attempt in 0..30 {
        let store = MemStore::default();
        let w = MemWriter::on(&store.disk);
        w.crash_after_writes(5);
        let e = format!("{:#}", mem_run(&f, &store, w, honest(&f)).unwrap_err());
        assert!(e.contains("crashed"), "{e}");
        let recorded = mem_recorded(&store);
        let again = mem_run(&f, &store, MemWriter::on(&store.disk), honest(&f)).unwrap();
        assert_eq!(again.bytes_fetched, total - recorded, "{again:?}");
        for x in &f {
            assert_eq!(
                store.content(&ContentId::of(x)).as_deref(),
                Some(x.as_slice())
            );
        }
        if recorded > 0 {
            return;
        }
        assert!(attempt < 29, "no crash in 30 left anything recorded");
    }
}

#[test]
fn all_in_memory_a_full_disk_is_kept_for_the_health_check() {
    let f = files();
    let store = MemStore::default();
    let w = MemWriter::on(&store.disk);
    w.fail_write(2, "No space left on device (os error 28)");
    let e = format!("{:#}", mem_run(&f, &store, w, honest(&f)).unwrap_err());
    assert!(
        e.contains("cannot write block") && e.contains("No space left"),
        "{e}"
    );
    assert_eq!(store.write_errors(), 1);
    mem_run(&f, &store, MemWriter::on(&store.disk), honest(&f)).unwrap();
    for x in &f {
        assert_eq!(
            store.content(&ContentId::of(x)).as_deref(),
            Some(x.as_slice())
        );
    }
}
