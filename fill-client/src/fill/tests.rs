//! The driver against sources in memory (`edges::mem`) and a real store in a temp dir:
//! the machine's decisions as the real driver carries them out, without sockets.

use std::time::Duration;

use fill_core::catalog::{Catalog, CatalogBuilder};
use fill_core::source::{Source, SourceKind};
use fill_core::{ContentId, Outboard};
use fill_store::store::Store;

use super::edges::mem::{MemSource, MemSources, Misbehaviour};
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

/// Fills an empty store with `files` from a free peer and a paid origin in memory.
fn fill(
    files: &[Vec<u8>],
    peer: MemSource,
    origin: MemSource,
    timeout: Duration,
) -> (anyhow::Result<FillReport>, Store, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
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
    let target_bytes = b.finish().unwrap();
    let target = Catalog::parse(&target_bytes).unwrap();
    let store = Store::new(tmp.path().join("app")).unwrap();
    store.create().unwrap();
    let sd = crate::commands::compute_delta(&target, &store, 1 << 40).unwrap();
    let sources = vec![
        source("peer", SourceKind::Peer, 0.0),
        source("origin", SourceKind::Origin, 0.02),
    ];
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
    let remotes = crate::net::Remotes::http(crate::net::Net::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let writer = Writer::start(Backend::Pwrite, &tmp.path().join("app/.fill/tmp")).await?;
        let stores = [StoreJob {
            store: &store,
            delta: &sd.delta,
            evict_ids: &sd.evict_ids,
            older: &sd.older,
        }];
        let job = FillJob {
            stores: &stores,
            target: &target,
            sources: &sources,
            holdings: &holdings,
            timeout,
            remotes: &remotes,
            routes: None,
        };
        let progress = Progress::new(sd.delta.bytes_to_fetch, "test", &sources);
        tokio::time::timeout(
            Duration::from_secs(30),
            run_with(job, mem, &writer, &progress),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the fill did not end within 30 s"))?
    });
    (result, store, tmp)
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
