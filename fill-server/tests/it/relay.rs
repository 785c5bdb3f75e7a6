//! The relay over loopback: a site peer reads the block map and the recorded blocks of a
//! file the store is still filling; nothing else of it, and nothing of it at `/content/`.

use std::os::unix::fs::FileExt;

use fill_core::blockmap::BlockMap;
use fill_core::outboard::{BlockSize, Outboard};
use fill_store::store::Store;

use crate::http::{config, get, start, store_with_files};

const BLOCK: u64 = 1024;

/// A store filling a 5.5-block file with blocks 0, 1 and 3 recorded; returns the data.
fn filling(store: &Store) -> (Outboard, Vec<u8>) {
    let data: Vec<u8> = (0..BLOCK * 11 / 2).map(|i| (i * 13 % 251) as u8).collect();
    let ob = Outboard::compute(&data, BlockSize::from_bytes(BLOCK).unwrap());
    let mut state = store.begin_partial(&ob, "film").unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(store.partial_data_path(&ob.id()))
        .unwrap();
    for b in [0u64, 1, 3] {
        let (off, len) = ob.block_range(b);
        f.write_all_at(&data[off as usize..(off + len) as usize], off)
            .unwrap();
        state.file.set_verified(b, true);
    }
    // Block 2 is on disk but not recorded: a peer must not get it.
    let (off, len) = ob.block_range(2);
    f.write_all_at(&data[off as usize..(off + len) as usize], off)
        .unwrap();
    f.sync_all().unwrap();
    store.save_partial(&state).unwrap();
    (ob, data)
}

#[test]
fn recorded_blocks_of_a_file_still_filling_are_relayed_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[3000]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (ob, data) = filling(&store);
    let id = ob.id();
    let srv = start(config(store.root()));
    let a = srv.addr;

    // The map: blocks 0, 1, 3 of 6, not complete.
    let r = get(a, &format!("/partial/map/{id}"), "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let map = BlockMap::parse(&r.body).unwrap();
    assert!(!map.complete);
    assert_eq!(map.size, data.len() as u64);
    assert_eq!(map.words, vec![0b1011]);

    // Recorded blocks, in any range within them.
    let r = get(
        a,
        &format!("/partial/content/{id}"),
        "Range: bytes=100-2047\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-2047/{}", data.len()).as_str())
    );
    assert_eq!(r.body, &data[100..2048]);
    let r = get(
        a,
        &format!("/partial/content/{id}"),
        "Range: bytes=3072-4095\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &data[3072..4096]));

    // Block 2 is written but not recorded; the whole file is not there.
    for range in ["Range: bytes=2048-2048\r\n", "Range: bytes=0-4095\r\n", ""] {
        let r = get(a, &format!("/partial/content/{id}"), range);
        assert_eq!(r.status, 404, "{range:?}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("block 2"),
            "{range:?}"
        );
    }
    let r = get(
        a,
        &format!("/partial/content/{id}"),
        "Range: bytes=9999999-\r\n",
    );
    assert_eq!(r.status, 416);

    // Its outboard, checked against the id by whoever reads it.
    let r = get(a, &format!("/partial/outboard/{id}"), "");
    assert_eq!(r.status, 200);
    assert_eq!(Outboard::parse(&r.body, id).unwrap(), ob);

    // A client that does not know the relay never sees the file.
    assert_eq!(get(a, &format!("/content/{id}"), "").status, 404);
    assert_eq!(get(a, &format!("/outboard/{id}"), "").status, 404);

    // A complete file is answered whole under /partial/ too, and its map says so.
    let (cid, cdata) = &files[0];
    let r = get(
        a,
        &format!("/partial/content/{cid}"),
        "Range: bytes=0-99\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &cdata[..100]));
    let map = BlockMap::parse(&get(a, &format!("/partial/map/{cid}"), "").body).unwrap();
    assert!(map.complete && map.held() == 1);
    assert_eq!(get(a, "/partial/catalog", "").status, 200);

    // Unknown and malformed ids.
    let unknown = blake3::hash(b"nothing").to_hex().to_string();
    for p in ["map", "content", "outboard"] {
        assert_eq!(
            get(a, &format!("/partial/{p}/{unknown}"), "").status,
            404,
            "{p}"
        );
        assert_eq!(
            get(a, &format!("/partial/{p}/..%2f..%2fetc"), "").status,
            400,
            "{p}"
        );
    }
}

#[test]
fn a_recorded_block_that_rotted_is_not_relayed() {
    let tmp = tempfile::tempdir().unwrap();
    store_with_files(tmp.path(), &[10]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (ob, data) = filling(&store);
    let id = ob.id();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(store.partial_data_path(&id))
        .unwrap();
    f.write_all_at(&[data[1500] ^ 0x40], 1500).unwrap();
    let srv = start(config(store.root()));
    let r = get(
        srv.addr,
        &format!("/partial/content/{id}"),
        "Range: bytes=0-2047\r\n",
    );
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("does not verify"));
    // Block 0 alone is still good.
    let r = get(
        srv.addr,
        &format!("/partial/content/{id}"),
        "Range: bytes=0-1023\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..1024]));
}

/// A completion moves the outboard, then the data into place, then lists the file: a peer
/// asking in between is answered from `content/` once the file is listed, not told 404
/// (which would send it to the costly link).
#[test]
fn a_file_completing_while_asked_for_is_served_once_listed() {
    let tmp = tempfile::tempdir().unwrap();
    store_with_files(tmp.path(), &[3000]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (ob, data) = filling(&store);
    let id = ob.id();
    let mut state = store.partial(&id).unwrap().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(store.partial_data_path(&id))
        .unwrap();
    for b in 0..ob.block_count() {
        let (off, len) = ob.block_range(b);
        f.write_all_at(&data[off as usize..(off + len) as usize], off)
            .unwrap();
        state.file.set_verified(b, true);
    }
    f.sync_all().unwrap();
    store.save_partial(&state).unwrap();
    let srv = start(config(store.root()));
    // Mid-completion, as `complete_partial` leaves it after its first step: the outboard
    // is in `outboard/`, the block map still in `.fill/partial/`.
    std::fs::rename(
        store.root().join(format!(".fill/partial/{id}.outboard")),
        store.outboard_path(&id),
    )
    .unwrap();
    let finisher = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            store.complete_partial(&state).unwrap();
        })
    };
    let r = get(
        srv.addr,
        &format!("/partial/content/{id}"),
        "Range: bytes=0-1023\r\n",
    );
    finisher.join().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..1024]));
}
