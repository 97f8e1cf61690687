//! Checkpoints pushed to and pulled from S3-compatible object storage (feature `s3`),
//! against moto's server on loopback: round trips value by value, sharing across stores,
//! corrupted and substituted objects and manifests, wrong keys, credentials, buckets and
//! URLs, and pushes interrupted at every request.
#![cfg(feature = "s3")]

mod s3server;

use std::path::Path;

use pickleshelf::{Error, RemoteError, Shelf};
use s3server::S3Server;

fn remote_err(e: Error) -> RemoteError {
    match e {
        Error::Remote(r) => *r,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// A store with values of every size: pickles of a few bytes (copied into checkpoint
/// entries), of 1 KB (inline frames the checkpoint promotes), of 100 KB (object files),
/// a 4 MB array, and a second version of it (a delta in the store).
fn fill(shelf: &Shelf, tag: &str) {
    for i in 0..20 {
        shelf.insert(&format!("small/{i}"), &(i, tag)).unwrap();
    }
    for i in 0..5 {
        let text: String = (0..1000).map(|j| char::from(b'a' + ((i * 7 + j) % 26) as u8)).collect();
        shelf.insert(&format!("medium/{i}"), &(text, tag)).unwrap();
    }
    for i in 0..3 {
        let v: Vec<u64> = (0..12_000).map(|j| j * 31 + i).collect();
        shelf.insert(&format!("large/{i}"), &v).unwrap();
    }
    let mut big: Vec<f64> = (0..500_000).map(|j| f64::from(j) * 0.5).collect();
    shelf.insert("big/v1", &big).unwrap();
    big[1000] = -1.0;
    shelf.insert("big/v2", &big).unwrap();
    shelf.insert(&format!("only/{tag}"), &tag).unwrap();
}

fn assert_same_keys_and_values(a: &Shelf, b: &Shelf) {
    let ka: Vec<String> = a.keys().collect::<Result<_, _>>().unwrap();
    let kb: Vec<String> = b.keys().collect::<Result<_, _>>().unwrap();
    assert_eq!(ka, kb);
    for k in &ka {
        assert_eq!(a.get_pickle(k).unwrap(), b.get_pickle(k).unwrap(), "value of {k}");
    }
}

/// The phases a transfer reported: name, announced total, steps advanced.
#[derive(Default)]
struct Steps(Vec<(&'static str, Option<u64>, u64)>);

impl pickleshelf::Progress for Steps {
    fn start(&mut self, what: &'static str, total: Option<u64>) {
        self.0.push((what, total, 0));
    }
    fn advance(&mut self, n: u64) {
        if let Some(last) = self.0.last_mut() {
            last.2 += n;
        }
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn push_then_pull_round_trips_every_value() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("round-trip");
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    fill(&shelf, "a");
    let info = shelf.checkpoint("run/1 ünïcode").unwrap();
    let remote = s3.remote("s3://round-trip/team/state").build().unwrap();
    let mut progress = Steps::default();
    let report = shelf.push_with_progress(&remote, "run/1 ünïcode", &mut progress).unwrap();
    assert_eq!(progress.0, vec![("uploading", Some(report.objects), report.objects)]);
    assert_eq!(report.keys, info.keys);
    assert!(!report.already_there);
    assert_eq!(report.skipped, 0);
    assert_eq!(report.uploaded, report.objects);
    // Small pickles ride in the manifest; everything else is an object, once.
    assert_eq!(report.objects, 5 + 3 + 2, "{report:?}");
    assert!(report.bytes_uploaded > 100_000 && report.bytes_uploaded < 5_000_000, "{report:?}");

    // The store goes on changing; the pull gives the checkpoint's state.
    shelf.insert("small/0", &"changed").unwrap();
    shelf.insert("after", &1).unwrap();
    let mut progress = Steps::default();
    let pulled = Shelf::pull_with_progress(&remote, "run/1 ünïcode", dir.path().join("b.db"), &mut progress).unwrap();
    assert_eq!(progress.0, vec![("downloading", Some(report.objects), report.objects)]);
    shelf.restore("run/1 ünïcode").unwrap();
    assert_same_keys_and_values(&shelf, &pulled);
    let cps = pulled.checkpoints().unwrap();
    assert_eq!((cps.len(), cps[0].name.as_str(), cps[0].keys), (1, "run/1 ünïcode", info.keys));
    let verified = pulled.verify().unwrap();
    assert!(verified.problems.is_empty() && verified.unreadable == 0, "{verified:?}");
    assert_eq!(pulled.get::<Vec<f64>>("big/v2").unwrap().unwrap()[1000], -1.0);

    // Listing.
    let listed = remote.checkpoints().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].keys), ("run/1 ünïcode", info.keys));
    assert_eq!(listed[0].created, info.created);
    assert!(listed[0].bytes > 100_000 && listed[0].manifest_bytes > 0);

    // A second push of the same checkpoint uploads nothing.
    let again = s3.remote("s3://round-trip/team/state").build().unwrap();
    let r2 = shelf.push(&again, "run/1 ünïcode").unwrap();
    assert!(r2.already_there);
    assert_eq!((r2.uploaded, again.stats().puts), (0, 0));
}

#[test]
fn stores_sharing_a_prefix_upload_shared_objects_once() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("shared");
    let dir = tempfile::tempdir().unwrap();
    let a = Shelf::open(dir.path().join("a.db")).unwrap();
    let b = Shelf::open(dir.path().join("b.db")).unwrap();
    fill(&a, "a");
    fill(&b, "b");
    a.checkpoint("a").unwrap();
    b.checkpoint("b").unwrap();
    let ra = s3.remote("s3://shared/p").build().unwrap();
    let rep_a = a.push(&ra, "a").unwrap();
    let rb = s3.remote("s3://shared/p").concurrency(3).build().unwrap();
    let rep_b = b.push(&rb, "b").unwrap();
    // medium/* differ (they carry the tag); large/* and big/* are the same values.
    assert_eq!((rep_b.objects, rep_b.skipped, rep_b.uploaded), (10, 5, 5), "{rep_b:?}");
    let stats = rb.stats();
    assert_eq!(stats.objects_uploaded, 5);
    // One manifest lookup, a HEAD per object, a PUT per missing object and the manifest.
    assert_eq!((stats.gets, stats.heads, stats.puts), (1, 10, 6), "{stats:?}");
    assert!(rep_b.bytes_uploaded < rep_a.bytes_uploaded / 4, "{rep_a:?} {rep_b:?}");
    let objects = s3.keys("shared", "p/objects/");
    assert_eq!(objects.len(), 10 + 5, "{objects:?}");
    // A checkpoint of a store that changed a little uploads only what changed.
    a.insert("large/0", &vec![7u64; 12_000]).unwrap();
    a.checkpoint("a2").unwrap();
    let rep_a2 = a.push(&ra, "a2").unwrap();
    assert_eq!((rep_a2.uploaded, rep_a2.skipped), (1, 9), "{rep_a2:?}");
    let names: Vec<String> = ra.checkpoints().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a", "a2", "b"]);
    let pulled = Shelf::pull(&rb, "a2", dir.path().join("c.db")).unwrap();
    assert_same_keys_and_values(&a, &pulled);
}

#[test]
fn corrupted_or_substituted_objects_are_detected_and_nothing_is_left() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("bad");
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    fill(&shelf, "a");
    shelf.checkpoint("c").unwrap();
    let remote = s3.remote("s3://bad/x").build().unwrap();
    shelf.push(&remote, "c").unwrap();
    let objects = s3.keys("bad", "x/objects/");
    let victim = objects[0].clone();
    let original = s3.get_object("bad", &victim);
    let out = tempfile::tempdir().unwrap();

    // A flipped byte, a truncation, another object's bytes (a valid frame of another
    // value), and a missing object: each fails the pull and leaves no store.
    let other = s3.get_object("bad", &objects[1]);
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("flipped", Some(flipped)),
        ("truncated", Some(original[..original.len() / 2].to_vec())),
        ("substituted", Some(other)),
        ("missing", None),
    ];
    for (what, bytes) in cases {
        match &bytes {
            Some(b) => s3.put_object("bad", &victim, b),
            None => s3.delete_object("bad", &victim),
        }
        let target = out.path().join(format!("{what}.db"));
        let err = remote_err(Shelf::pull(&remote, "c", &target).unwrap_err());
        match &err {
            RemoteError::CorruptedObject { digest, .. } => assert!(victim.ends_with(digest.as_str()), "{what}: {err}"),
            other => panic!("{what}: {other}"),
        }
        assert!(err.to_string().contains(victim.rsplit('/').next().unwrap()), "{err}");
        assert!(!target.exists(), "{what}: a failed pull left a store");
        assert!(leftovers(out.path()).is_empty(), "{what}: {:?}", leftovers(out.path()));
    }
    // Put back, the pull succeeds.
    s3.put_object("bad", &victim, &original);
    let pulled = Shelf::pull(&remote, "c", out.path().join("ok.db")).unwrap();
    assert_same_keys_and_values(&shelf, &pulled);
}

#[test]
fn damaged_manifests_and_wrong_keys_are_refused() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("keys");
    let dir = tempfile::tempdir().unwrap();
    let key = b"sixteen+ bytes of secret key".to_vec();
    let shelf = Shelf::builder(dir.path().join("a.db")).auth_key(key.clone()).open().unwrap();
    fill(&shelf, "k");
    shelf.checkpoint("c").unwrap();

    // The store's key and the remote's must agree.
    let unkeyed = s3.remote("s3://keys/k").build().unwrap();
    assert!(matches!(remote_err(shelf.push(&unkeyed, "c").unwrap_err()), RemoteError::KeyMismatch { .. }));
    let keyed = s3.remote("s3://keys/k").auth_key(key.clone()).build().unwrap();
    shelf.push(&keyed, "c").unwrap();
    let out = tempfile::tempdir().unwrap();

    // Pulled with no key, or another key: refused, naming the checkpoint.
    let err = remote_err(Shelf::pull(&unkeyed, "c", out.path().join("n.db")).unwrap_err());
    assert!(matches!(err, RemoteError::WrongKey { .. }), "{err}");
    let wrong = s3.remote("s3://keys/k").auth_key(b"another key, also long".to_vec()).build().unwrap();
    let err = remote_err(Shelf::pull(&wrong, "c", out.path().join("w.db")).unwrap_err());
    assert!(matches!(err, RemoteError::WrongKey { .. }) && err.to_string().contains("\"c\""), "{err}");

    // A writer without the key rewrites the manifest (a flipped byte): refused.
    let manifest_key = "k/checkpoints/c";
    let original = s3.get_object("keys", manifest_key);
    let mut changed = original.clone();
    let n = changed.len();
    changed[n - 40] ^= 1;
    s3.put_object("keys", manifest_key, &changed);
    let err = remote_err(Shelf::pull(&keyed, "c", out.path().join("m.db")).unwrap_err());
    assert!(matches!(err, RemoteError::WrongKey { .. }), "{err}");
    // Garbage in place of a manifest: refused as malformed.
    s3.put_object("keys", manifest_key, b"not a manifest");
    let err = remote_err(Shelf::pull(&keyed, "c", out.path().join("g.db")).unwrap_err());
    assert!(matches!(err, RemoteError::BadManifest { .. }), "{err}");
    assert!(leftovers(out.path()).is_empty(), "{:?}", leftovers(out.path()));
    // Pushing again does not overwrite what is there with other contents.
    let err = remote_err(shelf.push(&keyed, "c").unwrap_err());
    assert!(matches!(err, RemoteError::BadManifest { .. }), "{err}");

    s3.put_object("keys", manifest_key, &original);
    let pulled = Shelf::pull(&keyed, "c", out.path().join("ok.db")).unwrap();
    assert_same_keys_and_values(&shelf, &pulled);
    pulled.close().unwrap();
    // The pulled store has the key.
    assert!(Shelf::open(out.path().join("ok.db")).is_err());
}

#[test]
fn bad_urls_missing_buckets_and_names_give_clear_errors() {
    for url in ["http://bucket/x", "s3://", "s3://Upper/x", "s3://b//x"] {
        let err = remote_err(pickleshelf::Remote::open(url).unwrap_err());
        assert!(matches!(err, RemoteError::Url { .. }), "{url}: {err}");
        assert!(err.to_string().contains(url), "{err}");
    }
    let err = remote_err(pickleshelf::Remote::builder("s3://bkt/x").option("no_such_option", "1").build().unwrap_err());
    assert!(err.to_string().contains("no_such_option"), "{err}");
    let err = remote_err(pickleshelf::Remote::builder("s3://bkt/x").auth_key(b"short".to_vec()).build().unwrap_err());
    assert!(err.to_string().contains("16"), "{err}");

    let Some(s3) = S3Server::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    shelf.insert("a", &vec![1u8; 10_000]).unwrap();
    shelf.checkpoint("c").unwrap();
    let missing = s3.remote("s3://no-such-bucket/x").build().unwrap();
    for err in [
        shelf.push(&missing, "c").unwrap_err(),
        Shelf::pull(&missing, "c", dir.path().join("p.db")).unwrap_err(),
        missing.checkpoints().unwrap_err(),
    ] {
        let err = remote_err(err);
        assert!(matches!(err, RemoteError::NoBucket { .. }), "{err}");
        assert!(err.to_string().contains("no-such-bucket"), "{err}");
    }
    s3.create_bucket("here");
    let remote = s3.remote("s3://here/x").build().unwrap();
    let err = remote_err(Shelf::pull(&remote, "nope", dir.path().join("p.db")).unwrap_err());
    assert!(matches!(err, RemoteError::NoCheckpoint { .. }) && err.to_string().contains("nope"), "{err}");
    assert!(matches!(shelf.push(&remote, "nope").unwrap_err(), Error::Checkpoint { .. }));
    assert!(matches!(Shelf::pull(&remote, "", dir.path().join("p.db")).unwrap_err(), Error::Checkpoint { .. }));
    shelf.push(&remote, "c").unwrap();
    let err = remote_err(Shelf::pull(&remote, "c", dir.path().join("a.db")).unwrap_err());
    assert!(matches!(err, RemoteError::TargetExists { .. }), "{err}");
    assert_eq!(shelf.get::<Vec<u8>>("a").unwrap().unwrap().len(), 10_000);
    // A checkpoint name reused with other contents is refused, not overwritten.
    shelf.insert("a", &2).unwrap();
    shelf.delete_checkpoint("c").unwrap();
    shelf.checkpoint("c").unwrap();
    let err = remote_err(shelf.push(&remote, "c").unwrap_err());
    assert!(matches!(err, RemoteError::CheckpointExists { .. }), "{err}");
    let pulled = Shelf::pull(&remote, "c", dir.path().join("p.db")).unwrap();
    assert_eq!(pulled.get::<Vec<u8>>("a").unwrap().unwrap().len(), 10_000);
}

#[test]
fn wrong_credentials_are_refused_without_showing_them() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0 moto checks every request's credentials.
    let Some(s3) = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    shelf.insert("a", &vec![1u8; 10_000]).unwrap();
    shelf.checkpoint("c").unwrap();
    let remote = s3.remote("s3://creds/x").build().unwrap();
    for err in [
        shelf.push(&remote, "c").unwrap_err(),
        Shelf::pull(&remote, "c", dir.path().join("p.db")).unwrap_err(),
        remote.checkpoints().unwrap_err(),
    ] {
        let err = remote_err(err);
        let text = err.to_string();
        assert!(matches!(err, RemoteError::Denied { .. }), "{text}");
        assert!(text.contains("access denied"), "{text}");
        assert!(!text.contains(s3server::SECRET_ACCESS_KEY) && !text.contains(s3server::ACCESS_KEY_ID), "{text}");
        let debug = format!("{err:?}");
        assert!(!debug.contains(s3server::SECRET_ACCESS_KEY) && !debug.contains(s3server::ACCESS_KEY_ID), "{debug}");
    }
    assert!(!dir.path().join("p.db").exists());
}

#[test]
fn a_push_interrupted_at_any_request_leaves_the_remote_consistent_and_a_rerun_completes_it() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("cut");
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    fill(&shelf, "a");
    shelf.checkpoint("c").unwrap();
    // Requests of a whole push: a manifest lookup, a HEAD and a PUT per object, the
    // manifest's PUT.
    let total = 1 + 2 * 10 + 1;
    for cut in 0..=total {
        let url = format!("s3://cut/run{cut}");
        let failing = s3.remote(&url).concurrency(4).fail_after_requests(cut).build().unwrap();
        let result = shelf.push(&failing, "c");
        if cut < total {
            let err = remote_err(result.unwrap_err());
            assert!(matches!(err, RemoteError::Injected { .. }), "cut at {cut}: {err}");
            // No manifest, so no checkpoint, whatever objects made it.
            let remote = s3.remote(&url).build().unwrap();
            assert!(remote.checkpoints().unwrap().is_empty(), "cut at {cut}");
            let err = remote_err(Shelf::pull(&remote, "c", dir.path().join("x.db")).unwrap_err());
            assert!(matches!(err, RemoteError::NoCheckpoint { .. }), "cut at {cut}: {err}");
        } else {
            result.unwrap();
        }
        // A rerun completes it, uploading only what is missing.
        let remote = s3.remote(&url).build().unwrap();
        let present = s3.keys("cut", &format!("run{cut}/objects/")).len() as u64;
        let report = shelf.push(&remote, "c").unwrap();
        if cut < total {
            assert_eq!((report.skipped, report.uploaded), (present, 10 - present), "cut at {cut}");
        } else {
            assert!(report.already_there);
        }
        let target = dir.path().join(format!("pulled{cut}.db"));
        let pulled = Shelf::pull(&remote, "c", &target).unwrap();
        assert_same_keys_and_values(&shelf, &pulled);
        pulled.close().unwrap();
        std::fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn a_pull_cut_short_leaves_no_store() {
    let Some(s3) = S3Server::start() else { return };
    s3.create_bucket("pullcut");
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(dir.path().join("a.db")).unwrap();
    fill(&shelf, "a");
    shelf.checkpoint("c").unwrap();
    shelf.push(&s3.remote("s3://pullcut/p").build().unwrap(), "c").unwrap();
    let out = tempfile::tempdir().unwrap();
    // A manifest GET, then one GET per object.
    for cut in 0..11 {
        let failing = s3.remote("s3://pullcut/p").fail_after_requests(cut).build().unwrap();
        let err = remote_err(Shelf::pull(&failing, "c", out.path().join("p.db")).unwrap_err());
        assert!(matches!(err, RemoteError::Injected { .. }), "cut at {cut}: {err}");
        assert!(leftovers(out.path()).is_empty(), "cut at {cut}: {:?}", leftovers(out.path()));
    }
    let pulled = Shelf::pull(&s3.remote("s3://pullcut/p").build().unwrap(), "c", out.path().join("p.db")).unwrap();
    assert_same_keys_and_values(&shelf, &pulled);
}
