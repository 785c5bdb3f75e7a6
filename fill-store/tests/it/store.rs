use std::fs;
use std::path::Path;

use fill_core::ContentId;
use fill_core::outboard::{BlockSize, Outboard};
use fill_store::store::{Store, StoreError, chain};

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(&[seed; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn kib4() -> BlockSize {
    BlockSize::from_bytes(4096).unwrap()
}

#[test]
fn missing_or_empty_directory_is_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = Store::new(tmp.path().join("nope")).unwrap();
    assert!(missing.catalog().unwrap().validate().unwrap().is_empty());
    assert!(missing.partials().unwrap().is_empty());
    let report = missing.verify(false, &|_| {}).unwrap();
    assert_eq!(report.checked, 0);
    assert!(
        !tmp.path().join("nope").exists(),
        "reading must not create the store"
    );
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = Store::new(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("store {} is not a directory", file.display())
    );
}

#[test]
fn import_keeps_names_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let files = [
        ("a/one.mp4", 10_000),
        ("a/b/two.mp4", 0),
        ("three.xml", 4096),
        ("dup.mp4", 10_000),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        // dup.mp4 has the same bytes as a/one.mp4.
        let seed = if *name == "dup.mp4" { 0 } else { i as u8 };
        write(&src.join(name), &data(*len, seed));
    }
    let store = Store::new(tmp.path().join("store")).unwrap();
    let first = store
        .import(std::slice::from_ref(&src), kib4(), &|_| {})
        .unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first.iter().filter(|i| i.added).count(), 3);
    let cat_file = store.catalog().unwrap();
    let cat = cat_file.validate().unwrap();
    let mut names: Vec<&str> = (0..cat.len()).map(|i| cat.name(i)).collect();
    names.sort();
    // dup.mp4 sorts before a/one.mp4? No: paths are imported in sorted order, "a/..." first.
    assert_eq!(names, vec!["a/b/two.mp4", "a/one.mp4", "three.xml"]);
    for i in 0..cat.len() {
        let id = cat.id(i);
        let bytes = fs::read(store.content_path(&id)).unwrap();
        assert_eq!(ContentId::of(&bytes), id);
        assert_eq!(store.outboard(&id).unwrap().size(), bytes.len() as u64);
    }
    let before = fs::read(store.catalog_path()).unwrap();
    let again = store
        .import(std::slice::from_ref(&src), kib4(), &|_| {})
        .unwrap();
    assert!(again.iter().all(|i| !i.added));
    assert_eq!(
        fs::read(store.catalog_path()).unwrap(),
        before,
        "idempotent"
    );
    // A single file is named by its file name.
    let single = tmp.path().join("solo.bin");
    fs::write(&single, data(5000, 9)).unwrap();
    let got = store.import(&[single], kib4(), &|_| {}).unwrap();
    assert_eq!(got[0].name, "solo.bin");
    assert!(
        fs::read_dir(store.root().join(".fill/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no staging left behind"
    );
}

#[test]
fn import_rejects_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store")).unwrap();
    let missing = tmp.path().join("missing");
    let err = store
        .import(std::slice::from_ref(&missing), kib4(), &|_| {})
        .unwrap_err();
    assert!(
        chain(&err).starts_with(&format!("stat {}: ", missing.display())),
        "{err}"
    );
    let src = tmp.path().join("src");
    write(&src.join("bad\nname"), b"x");
    let err = store
        .import(std::slice::from_ref(&src), kib4(), &|_| {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot import {}: name contains control character 0x0a",
            src.join("bad\nname").display()
        )
    );
}

#[test]
fn verify_finds_and_repairs_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("good"), &data(20_000, 1));
    write(&src.join("bad"), &data(20_000, 2));
    write(&src.join("gone"), &data(300, 3));
    let store = Store::new(tmp.path().join("store")).unwrap();
    let imported = store.import(&[src], kib4(), &|_| {}).unwrap();
    let id = |n: &str| imported.iter().find(|i| i.name == n).unwrap().id;
    assert!(store.verify(false, &|_| {}).unwrap().bad.is_empty());

    // Flip one bit of "bad" (in place, as disk rot would) and remove "gone".
    let path = store.content_path(&id("bad"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[12_345] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    fs::remove_file(store.content_path(&id("gone"))).unwrap();
    fs::write(store.root().join("content/not-an-id"), b"?").unwrap();

    let report = store.verify(false, &|_| {}).unwrap();
    let mut bad: Vec<(String, String)> = report
        .bad
        .iter()
        .map(|b| (b.name.clone(), b.reason.clone()))
        .collect();
    bad.sort();
    assert_eq!(bad[0].0, "bad");
    assert!(bad[0].1.starts_with("content hashes to "), "{}", bad[0].1);
    assert_eq!(bad[1].0, "gone");
    assert!(bad[1].1.starts_with("open "), "{}", bad[1].1);
    assert_eq!(report.stray, vec!["not-an-id".to_owned()]);
    // Without --repair nothing changes.
    assert_eq!(store.catalog().unwrap().validate().unwrap().len(), 3);

    let repaired = store.verify(true, &|_| {}).unwrap();
    assert_eq!(repaired.bad.len(), 2);
    let cat_file = store.catalog().unwrap();
    let cat = cat_file.validate().unwrap();
    assert_eq!(cat.len(), 1);
    assert_eq!(cat.name(0), "good");
    assert!(!store.content_path(&id("bad")).exists());
    assert!(store.verify(false, &|_| {}).unwrap().bad.is_empty());
}

#[test]
fn partial_files_round_trip_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store")).unwrap();
    let bytes = data(5 * 4096 + 100, 4);
    let ob = Outboard::compute(&bytes, kib4());
    let mut state = store.begin_partial(&ob, "titles/x.mp4").unwrap();
    assert_eq!(state.file.block_count(), 6);
    let data_path = store.partial_data_path(&ob.id());
    assert_eq!(
        fs::metadata(&data_path).unwrap().len(),
        bytes.len() as u64,
        "preallocated"
    );
    // Write blocks 0 and 2, mark them verified.
    let mut disk = fs::read(&data_path).unwrap();
    for b in [0u64, 2] {
        let (off, len) = ob.block_range(b);
        disk[off as usize..(off + len) as usize]
            .copy_from_slice(&bytes[off as usize..(off + len) as usize]);
        state.file.set_verified(b, true);
    }
    fs::write(&data_path, &disk).unwrap();
    store.save_partial(&state).unwrap();
    let listed = store.partials().unwrap();
    assert_eq!(listed, vec![state.clone()]);
    assert_eq!(store.verify(false, &|_| {}).unwrap().bad_blocks.len(), 0);

    // Claim block 3 is verified though it holds zeros: verify catches it, repair clears it.
    state.file.set_verified(3, true);
    store.save_partial(&state).unwrap();
    let report = store.verify(false, &|_| {}).unwrap();
    assert_eq!(report.bad_blocks[0].blocks, vec![3]);
    store.verify(true, &|_| {}).unwrap();
    let after = &store.partials().unwrap()[0];
    assert!(after.file.is_verified(0) && after.file.is_verified(2) && !after.file.is_verified(3));

    // A corrupt block map is an error naming the file.
    let map = store
        .root()
        .join(format!(".fill/partial/{}.blocks", ob.id()));
    let mut raw = fs::read(&map).unwrap();
    raw.truncate(raw.len() - 1);
    fs::write(&map, &raw).unwrap();
    match store.partials() {
        Err(e @ StoreError::CorruptState { .. }) => {
            assert!(
                chain(&e).ends_with("block map is 51 bytes, header implies 52"),
                "{e}"
            )
        }
        other => panic!("expected a corrupt state error, got {other:?}"),
    }
}

#[test]
fn corrupt_catalog_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path()).unwrap();
    fs::write(store.catalog_path(), b"FILLCAT\0garbage").unwrap();
    let err = store.catalog().unwrap_err();
    assert_eq!(
        chain(&err),
        format!(
            "catalog {}: catalog truncated: 15 bytes, header implies 64",
            store.catalog_path().display()
        )
    );
}

/// A completion can be cut at any step by a crash; `recover` (and `complete_partial` itself)
/// settle each state: nothing half-done is listed, nothing complete is lost.
#[test]
fn interrupted_completions_are_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store")).unwrap();
    let make = |seed: u8| {
        let bytes = data(3 * 4096 + 5, seed);
        let ob = Outboard::compute(&bytes, kib4());
        let mut state = store.begin_partial(&ob, &format!("f{seed}")).unwrap();
        fs::write(store.partial_data_path(&ob.id()), &bytes).unwrap();
        for b in 0..state.file.block_count() {
            state.file.set_verified(b, true);
        }
        store.save_partial(&state).unwrap();
        (ob.id(), state)
    };
    let root = store.root().to_owned();
    // (a) Crash after the outboard moved: completing again still works.
    let (a, sa) = make(1);
    fs::rename(
        root.join(format!(".fill/partial/{a}.outboard")),
        store.outboard_path(&a),
    )
    .unwrap();
    store.complete_partial(&sa).unwrap();
    // (b) Crash after the data moved, before the catalog: recover adopts it.
    let (b, _) = make(2);
    fs::rename(
        root.join(format!(".fill/partial/{b}.outboard")),
        store.outboard_path(&b),
    )
    .unwrap();
    fs::rename(store.partial_data_path(&b), store.content_path(&b)).unwrap();
    // (c) Crash after the catalog, before the block map went: recover removes the map.
    let (c, sc) = make(3);
    store.complete_partial(&sc).unwrap();
    store.save_partial(&sc).unwrap();
    // (d) Moved content that does not match its id: removed, to be fetched again.
    let (d, _) = make(4);
    fs::rename(
        root.join(format!(".fill/partial/{d}.outboard")),
        store.outboard_path(&d),
    )
    .unwrap();
    fs::write(store.content_path(&d), b"not the content").unwrap();
    fs::remove_file(store.partial_data_path(&d)).unwrap();

    assert_eq!(store.recover().unwrap(), 3);
    let file = store.catalog().unwrap();
    let cat = file.validate().unwrap();
    for id in [a, b, c] {
        assert!(cat.find(&id).is_some(), "{id} not listed");
        assert_eq!(
            ContentId::of(&fs::read(store.content_path(&id)).unwrap()),
            id
        );
    }
    assert!(cat.find(&d).is_none());
    assert!(!store.content_path(&d).exists() && !store.outboard_path(&d).exists());
    assert!(store.partials().unwrap().is_empty());
    assert!(store.verify(false, &|_| {}).unwrap().bad.is_empty());
    assert_eq!(store.recover().unwrap(), 0, "nothing left to settle");
}

/// An eviction lists nothing before it removes files, and an import moves a file into place
/// before it lists it: a crash in between leaves files nothing lists. `recover` removes them,
/// and only them.
#[test]
fn interrupted_evictions_and_imports_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for seed in 1..=3u8 {
        write(&src.join(format!("f{seed}")), &data(2 * 4096 + 7, seed));
    }
    let store = Store::new(tmp.path().join("store")).unwrap();
    let ids: Vec<ContentId> = store
        .import(std::slice::from_ref(&src), kib4(), &|_| {})
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    let (a, b, kept) = (ids[0], ids[1], ids[2]);
    let saved = |id: &ContentId| {
        (
            fs::read(store.content_path(id)).unwrap(),
            fs::read(store.outboard_path(id)).unwrap(),
        )
    };
    let (a_content, a_outboard) = saved(&a);
    let (_, b_outboard) = saved(&b);
    store.evict(&[a, b]).unwrap();
    // (a) Cut after the catalog edit, before any file went; (b) after the content went.
    fs::write(store.content_path(&a), &a_content).unwrap();
    fs::write(store.outboard_path(&a), &a_outboard).unwrap();
    fs::write(store.outboard_path(&b), &b_outboard).unwrap();
    // A partial file whose completion moved its outboard into place: it stays.
    let p_bytes = data(4096 + 1, 9);
    let p_ob = Outboard::compute(&p_bytes, kib4());
    let p = p_ob.id();
    store.begin_partial(&p_ob, "p").unwrap();
    fs::write(store.partial_data_path(&p), &p_bytes).unwrap();
    fs::write(store.outboard_path(&p), p_ob.to_bytes()).unwrap();
    // A name that is not an id is not the store's to remove.
    fs::write(store.root().join("content/README"), b"left by an operator").unwrap();

    assert_eq!(store.recover().unwrap(), 2);
    for id in [a, b] {
        assert!(!store.content_path(&id).exists(), "{id}'s content left");
        assert!(!store.outboard_path(&id).exists(), "{id}'s outboard left");
    }
    assert!(store.outboard_path(&p).exists());
    assert_eq!(store.partials().unwrap().len(), 1);
    assert!(store.root().join("content/README").exists());
    let file = store.catalog().unwrap();
    let cat = file.validate().unwrap();
    assert_eq!(cat.len(), 1);
    assert!(cat.find(&kept).is_some());
    assert!(store.verify(false, &|_| {}).unwrap().bad.is_empty());
    assert_eq!(store.recover().unwrap(), 0, "nothing left to settle");
}

/// `begin_partial` syncs nothing, so a crash before a file's first record may leave its
/// block map torn or lost, or its outboard torn: `recover` removes what no longer forms a
/// partial file, and a resumed fill writes a bad outboard again before the file completes.
#[test]
fn what_a_crash_before_the_first_record_leaves_is_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store")).unwrap();
    let begin = |seed: u8| {
        let bytes = data(3 * 4096 + 5, seed);
        let ob = Outboard::compute(&bytes, kib4());
        let state = store.begin_partial(&ob, &format!("f{seed}")).unwrap();
        (bytes, ob, state)
    };
    let path = |id: &ContentId, ext: &str| {
        store
            .root()
            .join(".fill/partial")
            .join(format!("{}{ext}", id.to_hex().as_str()))
    };
    let (_, torn_map, _) = begin(1);
    let (_, lost_map, _) = begin(2);
    let (bytes, torn_ob, mut state) = begin(3);
    fs::write(path(&torn_map.id(), ".blocks"), b"").unwrap();
    fs::remove_file(path(&lost_map.id(), ".blocks")).unwrap();
    fs::write(path(&torn_ob.id(), ".outboard"), &torn_ob.to_bytes()[..40]).unwrap();

    assert_eq!(store.recover().unwrap(), 2);
    for id in [torn_map.id(), lost_map.id()] {
        for ext in ["", ".outboard", ".blocks"] {
            assert!(!path(&id, ext).exists(), "{id}{ext} left");
        }
    }
    let left: Vec<ContentId> = store
        .partials()
        .unwrap()
        .iter()
        .map(|p| p.file.id)
        .collect();
    assert_eq!(left, vec![torn_ob.id()]);

    // The resumed fill took the outboard from a source: it goes back in, once.
    assert!(store.partial_outboard(&torn_ob.id()).is_err());
    assert!(store.repair_partial_outboard(&torn_ob).unwrap());
    assert!(!store.repair_partial_outboard(&torn_ob).unwrap());
    fs::write(store.partial_data_path(&torn_ob.id()), &bytes).unwrap();
    for b in 0..state.file.block_count() {
        state.file.set_verified(b, true);
    }
    store.save_partial(&state).unwrap();
    store.complete_partial(&state).unwrap();
    assert_eq!(store.outboard(&torn_ob.id()).unwrap(), torn_ob);
    assert!(store.verify(false, &|_| {}).unwrap().bad.is_empty());
}

/// A kill between writing a staging file and renaming it into place leaves it in
/// `.fill/tmp/`: `recover` removes those of processes that are gone, and leaves a live
/// process's and names that are not the store's.
#[test]
fn staging_files_of_dead_processes_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("store")).unwrap();
    store.create().unwrap();
    let staging = store.root().join(".fill/tmp");
    // A pid above the kernel's maximum (2^22) never runs.
    let dead = 4_194_305u32;
    let me = std::process::id();
    for name in [
        format!("{dead}-0"),
        format!("uring-probe-{dead}"),
        format!("{me}-7"),
        "operator-notes".to_owned(),
    ] {
        fs::write(staging.join(&name), b"half a file").unwrap();
    }
    assert_eq!(store.recover().unwrap(), 2);
    let mut left: Vec<String> = fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec![format!("{me}-7"), "operator-notes".to_owned()]);
}
