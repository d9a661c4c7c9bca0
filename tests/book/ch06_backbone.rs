//! Chapter 6, the pre-trained backbone: reading PyTorch's file, the network in ndarray and
//! in candle agreeing on the same weights, and ImageNet predictions on real photos.

use std::sync::OnceLock;

use dlbook::data::image::{read_rgb, resize, resize_and_center_crop, to_chw};
use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::models::efficientnet::{efficientnet_lite0, load_imagenet, load_state_dict};
use dlbook::models::pth::read_pth;
use dlbook::report::{Report, Value};
use ndarray::{Array3, Axis};

fn data() -> DataDir {
    DataDir::resolve(None)
}

/// The state dict has EfficientNet-Lite0's 4,652,008 parameters (the published 4.65 M) in
/// 247 float tensors, plus 49 batch-norm counters; a weight stored channels-last comes
/// out row-major.
#[test]
fn reads_efficientnet_state_dict() {
    let path = data()
        .verified("efficientnet_lite0/efficientnet-lite0-57934424.pth")
        .unwrap();
    let tensors = read_pth(&path).unwrap();
    assert_eq!(tensors.len(), 296);
    let floats: Vec<_> = tensors.iter().filter(|t| t.value.is_some()).collect();
    let params: usize = floats
        .iter()
        .filter(|t| !t.name.contains("running_"))
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    assert_eq!(floats.len(), 247);
    assert_eq!(params, 4_652_008);
    let stem = tensors
        .iter()
        .find(|t| t.name == "_conv_stem.weight")
        .unwrap();
    assert_eq!(stem.shape, vec![32, 3, 3, 3]);
    assert!(stem.value.as_ref().unwrap().is_standard_layout());
}

/// A state dict without one of the network's tensors is refused, naming it.
#[test]
fn missing_weight_is_an_error() {
    let mut state = load_state_dict(&data()).unwrap();
    state.retain(|t| t.name != "_blocks.7._bn1.running_var");
    let mut net = efficientnet_lite0(1000, 0);
    let e = load_imagenet(&mut net, &state, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("_blocks.7._bn1.running_var: not in the file"),
        "{e}"
    );
}

/// A file cut short is refused with a message saying where, not a panic.
#[test]
fn truncated_pth_is_an_error() {
    let path = data()
        .verified("efficientnet_lite0/efficientnet-lite0-57934424.pth")
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let dir = std::env::temp_dir().join(format!("dlbook-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (cut, what) in [
        (bytes.len() - 1000, "truncated in storage"),
        (40, "pickle"),
        (4, "neither"),
    ] {
        let p = dir.join("cut.pth");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = format!("{:#}", read_pth(&p).unwrap_err());
        assert!(e.contains(what), "cut at {cut}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn photos() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("pretrained_photos", &DataDir::resolve(None))
            .cloned()
            .unwrap()
    })
}

/// The ImageNet class indices in the top 5 of the photo whose row starts at `first`.
fn top5(first: usize) -> Vec<usize> {
    let t = photos().table("top5").unwrap();
    t.rows[first..first + 5]
        .iter()
        .map(|row| match &row[2] {
            Value::Text(s) => s
                .rsplit('(')
                .next()
                .unwrap()
                .trim_end_matches(')')
                .parse()
                .unwrap(),
            v => panic!("class cell {v:?}"),
        })
        .collect()
}

/// The from-scratch network and its candle twin compute the same logits from the same
/// weights.
#[test]
fn scratch_and_candle_logits_agree() {
    let d = photos().get_fact("max_logit_diff").unwrap();
    assert!(d < 1e-4, "largest logit difference {d}");
}

/// The cat is a cat: its three most probable classes are ImageNet's three domestic cats
/// (tabby 281, tiger cat 282, Egyptian cat 285); the coffee is an espresso in a cup; the
/// rocket launch is a missile, a projectile or a space shuttle within the top 5.
#[test]
fn photos_are_recognised() {
    let cat = top5(0);
    let mut first3 = cat[..3].to_vec();
    first3.sort();
    assert_eq!(first3, vec![281, 282, 285], "cat: {cat:?}");
    let coffee = top5(5);
    assert_eq!(coffee[0], 967, "coffee: {coffee:?}");
    assert!(coffee.contains(&968), "coffee: {coffee:?}");
    let rocket = top5(15);
    assert!([657, 744, 812].contains(&rocket[0]), "rocket: {rocket:?}");
}

/// ImageNet has no class for a person: on the astronaut's portrait the network is far
/// less sure of its best guess than on any other photo.
#[test]
fn astronaut_has_no_class() {
    let r = photos();
    let astronaut = r.get_fact("astronaut_top1_prob").unwrap();
    for other in ["chelsea", "coffee", "rocket"] {
        let p = r.get_fact(&format!("{other}_top1_prob")).unwrap();
        assert!(astronaut < 0.5 * p, "astronaut {astronaut} vs {other} {p}");
    }
}

/// The resize filter: a constant image stays constant, every output pixel is a weighted
/// mean (weights sum to one), and enlarging 2 -> 4 is bilinear interpolation.
#[test]
fn resize_is_a_normalised_filter() {
    let flat = Array3::from_elem((3, 37, 53), 0.25f32);
    let out = resize(&flat.view(), 16, 24);
    assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-6));
    for (n_in, n_out) in [(512, 224), (28, 64), (7, 3)] {
        let w = dlbook::data::image::resize_weights(n_in, n_out);
        for row in w.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }
    let mut two = Array3::zeros((1, 1, 2));
    two[[0, 0, 1]] = 1.0f32;
    let four = resize(&two.view(), 1, 4);
    let want = [0.0, 0.25, 0.75, 1.0];
    for (k, w) in want.iter().enumerate() {
        assert!((four[[0, 0, k]] - w).abs() < 1e-6, "{four:?}");
    }
    // A photo: the centre crop has the asked size.
    let img = read_rgb(&data().verified("photos/rocket.jpg").unwrap()).unwrap();
    let x = resize_and_center_crop(&to_chw(&img.view()).view(), 224, 0.875);
    assert_eq!(x.shape(), &[3, 224, 224]);
}

/// A file that is not an image is refused, naming the file.
#[test]
fn unreadable_image_is_an_error() {
    let dir = std::env::temp_dir().join(format!("dlbook-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("broken.png");
    let png = std::fs::read(data().verified("photos/chelsea.png").unwrap()).unwrap();
    std::fs::write(&p, &png[..png.len() / 3]).unwrap();
    let e = format!("{:#}", read_rgb(&p).unwrap_err());
    assert!(e.contains("broken.png"), "{e}");
    std::fs::write(&p, b"not an image at all").unwrap();
    let e = format!("{:#}", read_rgb(&p).unwrap_err());
    assert!(e.contains("broken.png"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The quick backbone benchmark measures both implementations at every case (the
/// timings themselves are never asserted).
#[test]
fn the_backbone_benchmark_times_both_networks() {
    use dlbook::bench::backbone::{run, BackboneConfig};
    let cfg = BackboneConfig::quick();
    let r = run(&cfg, &data(), "backbone").unwrap();
    let t = r.table("backbone").unwrap();
    assert_eq!(t.rows.len(), 2 * cfg.cases.len());
    for row in &t.rows {
        assert!(row[1].number().unwrap() > 0.0, "{row:?}");
    }
}
