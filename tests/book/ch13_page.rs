//! Chapter 13: the drawing page, in headless Chromium against a real server.
//!
//! The page draws real MNIST test digits through its `#draw=` hook, runs its own
//! preprocessing (crop, scale into 20 × 20, centre by mass in 28 × 28) and asks the
//! server; the test reads the predicted class back from the DOM. Chromium comes from
//! `bash .ci/setup all` (or `DLBOOK_CHROMIUM`).

use std::sync::OnceLock;

use dlbook::bench::serve::{headless, page_drawing};
use dlbook::data::idx::mnist;
use dlbook::data::{DataDir, Split};
use dlbook::serve::batcher::{Classifier, MAX_BATCH_IMAGES};
use dlbook::serve::local::{request, Running};
use dlbook::serve::model::{start_workers, MnistCnn};
use dlbook::serve::{AppState, Deployed, ServeConfig};
use dlbook::train::mnist::{train_and_save, Recipe};

/// Test digits the page is given (the first ones of the MNIST test set).
const DIGITS: usize = 3;

/// Chapter 5's CNN after one epoch on the first 8,000 training images (a few seconds),
/// saved where the server loads it from.
pub(crate) fn trained() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("dlbook-page-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mnist_cnn.safetensors");
        let recipe = Recipe {
            n_train: 8000,
            n_test: 1000,
            ..Recipe::new(1, 0)
        };
        train_and_save(&DataDir::resolve(None), &recipe, &path, None, None, None)
            .unwrap();
        path
    })
}

fn server() -> Running {
    let s = AppState::new(ServeConfig {
        log_requests: false,
        ..ServeConfig::default()
    });
    s.deploy(Deployed::new(
        "mnist_cnn",
        "page-test",
        start_workers(trained(), 1, 64, MAX_BATCH_IMAGES).unwrap(),
    ));
    Running::start(s, 2).unwrap()
}

/// `GET /` is one HTML page that needs nothing from another server: no external
/// script, style, font or image, so it works offline and behind a firewall.
#[test]
fn the_page_is_one_self_contained_html_file() {
    let srv = server();
    let (status, body) = request(srv.addr, "GET", "/", None).unwrap();
    let page = String::from_utf8(body).unwrap();
    assert_eq!(status, 200);
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..40]);
    assert!(page.contains("<canvas id=\"pad\" width=\"280\" height=\"280\""));
    for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
        assert!(!page.contains(external), "the page refers to `{external}`");
    }
}

/// For each of the first test digits drawn on the page's canvas: the class the page
/// shows, the class the model gives the digit sent directly, the label, and whether the
/// 28 × 28 pixels the page sent are the test image's own, byte for byte.
fn page_predictions() -> &'static [(String, usize, u8, bool)] {
    static R: OnceLock<Vec<(String, usize, u8, bool)>> = OnceLock::new();
    R.get_or_init(page_run)
}

/// The text of the element `id` in `dom` (up to the next tag).
pub(crate) fn element(dom: &str, id: &str) -> String {
    dom.split_once(&format!("id=\"{id}\""))
        .and_then(|(_, rest)| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"))
}

fn page_run() -> Vec<(String, usize, u8, bool)> {
    let test = mnist(&DataDir::resolve(None), Split::Test).unwrap();
    let mut model = MnistCnn::load(trained()).unwrap();
    let srv = server();
    let out = (0..DIGITS)
        .map(|i| {
            let image = &test.images.pixels[i * 784..(i + 1) * 784];
            let dom =
                headless(&page_drawing(&srv, image), &["--dump-dom".into()]).unwrap();
            let shown = element(&dom, "predicted");
            let hex: String = image.iter().map(|b| format!("{b:02x}")).collect();
            let same = element(&dom, "sent") == hex;
            let px: Vec<f32> = image.iter().map(|&b| f32::from(b) / 255.0).collect();
            let probs = model.predict(&px, 1);
            let direct = (0..10)
                .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
                .unwrap();
            (shown, direct, test.labels[i], same)
        })
        .collect();
    srv.stop().unwrap();
    out
}

/// Drawn on the canvas and read back from the page, each test digit gets the model's
/// class for the original image, which is its label: the page's downsampling hands the
/// model the digit as MNIST made it.
#[test]
fn a_digit_drawn_on_the_page_is_classified_as_its_label() {
    for (shown, direct, label, _) in page_predictions() {
        assert_eq!(
            *direct,
            usize::from(*label),
            "the model itself misses this digit"
        );
        assert_eq!(
            *shown,
            label.to_string(),
            "the page shows `{shown}` for a {label}"
        );
    }
}

/// An MNIST digit painted on the canvas at ten times its size reaches the model as the
/// very image MNIST made: cropping, scaling into 20 × 20 and centring by mass undo the
/// painting exactly, byte for byte.
#[test]
fn a_digit_painted_on_the_canvas_reaches_the_model_as_mnist_made_it() {
    for (i, (_, _, label, same)) in page_predictions().iter().enumerate() {
        assert!(same, "test image {i} (a {label}) reached the model changed");
    }
}
