//! The data readers and the data catalog: bad input is a clear error, never a panic, a
//! hang, or an allocation the input merely claims.

use std::io::Write;
use std::path::{Path, PathBuf};

use dlbook::data::{self, DataDir, FetchOptions, Split};

/// A fresh, empty folder for one call (tests run in parallel: each call gets its own).
pub(super) fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let d = std::env::temp_dir().join(format!("dlbook-test-{pid}-{name}-{k}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, rows: u32, cols: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    for x in [0x803u32, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The error message of reading `bytes` as a gzip IDX image file.
fn image_error(bytes: &[u8]) -> String {
    let d = scratch("img");
    let p = write(&d, "x-idx3-ubyte.gz", bytes);
    let msg = format!(
        "{:#}",
        data::read_idx_images(&p).expect_err("must be rejected")
    );
    assert!(
        msg.contains("x-idx3-ubyte.gz"),
        "the error names the file: {msg}"
    );
    msg
}

#[test]
fn idx_reader_round_trips() {
    let pix: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let d = scratch("ok");
    let p = write(&d, "ok.gz", &gz(&idx_images(2, 3, 4, &pix)));
    let im = data::read_idx_images(&p).unwrap();
    assert_eq!((im.n, im.rows, im.cols), (2, 3, 4));
    assert_eq!(im.image(1), &pix[12..]);
}

#[test]
fn idx_reader_rejects_truncated_payload() {
    let pix = vec![7u8; 2 * 28 * 28 - 1];
    let msg = image_error(&gz(&idx_images(2, 28, 28, &pix)));
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn idx_reader_rejects_truncated_header() {
    let msg = image_error(&gz(&[0, 0, 8, 3, 0, 0]));
    assert!(msg.contains("truncated IDX header"), "{msg}");
}

#[test]
fn idx_reader_rejects_wrong_magic() {
    let mut bytes = idx_images(1, 2, 2, &[1, 2, 3, 4]);
    bytes[3] = 0x01;
    let msg = image_error(&gz(&bytes));
    assert!(msg.contains("wrong IDX magic"), "{msg}");
}

#[test]
fn idx_reader_refuses_a_lying_header_without_allocating() {
    // The header claims 4 billion 65535x65535 images: far more than any limit. The reader
    // must refuse before allocating anything of that size.
    let msg = image_error(&gz(&idx_images(u32::MAX, 65_535, 65_535, &[0; 16])));
    assert!(msg.contains("limit"), "{msg}");
    // A claim under the limit but larger than the file is a truncation, found by reading
    // what is there (not by allocating what is claimed).
    let msg = image_error(&gz(&idx_images(100_000, 28, 28, &[0; 784])));
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn idx_reader_rejects_trailing_bytes() {
    let msg = image_error(&gz(&idx_images(1, 2, 2, &[1, 2, 3, 4, 5])));
    assert!(msg.contains("trailing"), "{msg}");
}

#[test]
fn idx_reader_rejects_non_gzip_and_empty_files() {
    let msg = image_error(&idx_images(1, 2, 2, &[1, 2, 3, 4]));
    assert!(msg.contains("gzip") || msg.contains("header"), "{msg}");
    let msg = image_error(b"");
    assert!(
        msg.contains("truncated IDX header") || msg.contains("gzip"),
        "{msg}"
    );
}

#[test]
fn idx_reader_survives_every_truncation_of_a_real_file() {
    let pix: Vec<u8> = (0..5 * 28 * 28).map(|i| (i * 31 % 256) as u8).collect();
    let full = gz(&idx_images(5, 28, 28, &pix));
    let d = scratch("cuts");
    // Every prefix is an error, never a panic; the full file reads.
    for cut in (0..full.len()).step_by(7) {
        let p = write(&d, "cut.gz", &full[..cut]);
        assert!(
            data::read_idx_images(&p).is_err(),
            "prefix of {cut} bytes was accepted"
        );
    }
    let p = write(&d, "cut.gz", &full);
    assert_eq!(data::read_idx_images(&p).unwrap().pixels, pix);
    // Flipping any single byte of the compressed stream is caught (gzip's CRC, or the
    // header checks), or yields a file that still parses consistently.
    for i in (0..full.len()).step_by(11) {
        let mut bad = full.clone();
        bad[i] ^= 0x5a;
        let p = write(&d, "flip.gz", &bad);
        if let Ok(im) = data::read_idx_images(&p) {
            assert_eq!(im.pixels.len(), im.n * im.rows * im.cols);
        }
    }
}

#[test]
fn label_reader_rejects_out_of_range_labels() {
    let mut v = vec![];
    for x in [0x801u32, 3] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[1, 12, 3]);
    let d = scratch("lab");
    let p = write(&d, "lab.gz", &gz(&v));
    let msg = format!("{:#}", data::read_idx_labels(&p, 10).unwrap_err());
    assert!(msg.contains("label 12 at index 1"), "{msg}");
}

#[test]
fn csv_reader_reads_missing_values_and_rejects_bad_rows() {
    let s = data::parse_csv_series("date,co2\n2000-01,1.5\n2000-02,\n", "co2").unwrap();
    assert_eq!(s.values, [Some(1.5), None]);
    assert_eq!(s.index, ["2000-01", "2000-02"]);
    let e = format!(
        "{:#}",
        data::parse_csv_series("a,b\n1,x\n", "b").unwrap_err()
    );
    assert!(e.contains("line 2") && e.contains("`x`"), "{e}");
    let e = format!(
        "{:#}",
        data::parse_csv_series("a,b\n1,2,3\n", "b").unwrap_err()
    );
    assert!(e.contains("3 cells"), "{e}");
    let e = format!(
        "{:#}",
        data::parse_csv_series("a,b\n1,2\n", "c").unwrap_err()
    );
    assert!(e.contains("no column `c`"), "{e}");
    assert!(data::parse_csv_series("", "a").is_err());
    assert!(data::parse_csv_series("a\n", "a").is_err());
    assert!(data::parse_csv_series("a\nNaN\n", "a").is_err());
}

#[test]
fn corpus_reader_rejects_empty_and_non_ascii() {
    let d = scratch("corpus");
    let e = format!(
        "{:#}",
        data::read_corpus(&write(&d, "e.txt", b"")).unwrap_err()
    );
    assert!(e.contains("empty"), "{e}");
    let e = format!(
        "{:#}",
        data::read_corpus(&write(&d, "u.txt", "ab\u{e9}".as_bytes())).unwrap_err()
    );
    assert!(e.contains("offset 2"), "{e}");
}

#[test]
fn real_data_verifies_and_reads() {
    let dir = DataDir::resolve(None);
    let reports = data::verify(&dir, &[]).unwrap();
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.is_ok())
        .map(|r| r.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "data not ready ({}): {bad:?}",
        dir.root().display()
    );
    let test = data::mnist(&dir, Split::Test).unwrap();
    assert_eq!(test.images.n, 10_000);
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l as usize] += 1);
    // The published test-set label counts.
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let air =
        data::read_csv_series(&dir.verified("airpassengers.csv").unwrap(), "passengers")
            .unwrap();
    assert_eq!(air.values.len(), 144);
    let co2 = data::read_csv_series(&dir.verified("co2_weekly.csv").unwrap(), "co2_ppm")
        .unwrap();
    assert_eq!(co2.values.iter().filter(|v| v.is_none()).count(), 59);
}

#[test]
fn one_flipped_byte_fails_verification_naming_the_file() {
    let src = DataDir::resolve(None);
    let d = scratch("flip");
    let dir = DataDir::new(&d);
    std::fs::create_dir_all(d.join("mnist")).unwrap();
    let rel = "mnist/t10k-labels-idx1-ubyte.gz";
    let mut bytes = std::fs::read(src.path(rel)).unwrap();
    let ok = data::verify(&dir, &["mnist"]).unwrap();
    assert!(ok.iter().all(|r| !r.is_ok()), "an empty folder has nothing");
    bytes[1000] ^= 1;
    std::fs::write(dir.path(rel), &bytes).unwrap();
    let r = data::verify(&dir, &["mnist"]).unwrap();
    let bad = r.iter().find(|r| r.path == rel).unwrap();
    assert!(matches!(bad.status, data::Status::Corrupt(_)), "{bad}");
    assert!(bad.to_string().contains(rel));
    // The loader refuses it too, and says what to do.
    let e = format!("{:#}", dir.verified(rel).unwrap_err());
    assert!(
        e.contains("t10k-labels") && e.contains("dlbook data fetch"),
        "{e}"
    );
}

#[test]
fn fetch_copies_from_a_mirror_atomically_and_rejects_a_bad_mirror() {
    let src = DataDir::resolve(None);
    let d = scratch("fetch");
    let dir = DataDir::new(d.join("data"));
    let opts = FetchOptions {
        from: Some(src.root().to_path_buf()),
        ..Default::default()
    };
    let got = data::fetch(&dir, &["airpassengers", "co2_monthly"], &opts).unwrap();
    assert!(
        got.iter().all(|o| o.source.starts_with("copied")),
        "{got:?}"
    );
    let again = data::fetch(&dir, &["airpassengers"], &opts).unwrap();
    assert_eq!(again[0].source, "present");
    // A mirror with a corrupt copy is refused, and nothing is left behind.
    let bad_mirror = d.join("bad");
    std::fs::create_dir_all(&bad_mirror).unwrap();
    std::fs::write(
        bad_mirror.join("sunspots_yearly.csv"),
        "year,sunactivity\n1700,5\n",
    )
    .unwrap();
    let opts = FetchOptions {
        from: Some(bad_mirror),
        ..Default::default()
    };
    let e = format!("{:#}", data::fetch(&dir, &["sunspots"], &opts).unwrap_err());
    assert!(
        e.contains("sunspots_yearly.csv") && e.contains("rejected"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only the two good files remain: {left:?}");
    let e = format!(
        "{:#}",
        data::fetch(&dir, &["nope"], &FetchOptions::default()).unwrap_err()
    );
    assert!(e.contains("no dataset `nope`"), "{e}");
}
