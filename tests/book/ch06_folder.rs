//! Chapter 6, a classifier for your own images: a folder of real images (MNIST digits
//! written as PNG and JPEG files, in several sizes and colour modes) goes through the
//! whole pipeline: scan, stratified split, features, the head, the saved model, predict,
//! and every bad input gives a clear error.
//!
//! The backbone here is [`RandomConv`], randomly initialised convolutions: these tests
//! are about the folder pipeline, not about the backbone's quality, and a small random
//! network keeps them fast.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dlbook::data::folder::{is_image_file, load_image, BadImages, ImageFolder};
use dlbook::data::{mnist, DataDir, LabelledImages, Split};
use dlbook::experiments::folder_digits::write_digit_folder;
use dlbook::transfer::folder::{
    backbone_named, train, Backbone, Classifier, EfficientNetLite0, FolderConfig,
    RandomConv, Trained,
};
use image::GrayImage;

/// Side of the images the test backbone takes.
const SIZE: usize = 32;
/// The digits used as classes, and the folder names they get.
const CLASSES: [(u8, &str); 3] = [(0, "zero"), (1, "one"), (7, "seven")];
/// Images per class.
const PER_CLASS: usize = 30;

/// A fresh folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("dlbook-ch06-folder-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn digits() -> &'static LabelledImages {
    static SET: OnceLock<LabelledImages> = OnceLock::new();
    SET.get_or_init(|| mnist(&DataDir::resolve(None), Split::Test).expect("MNIST"))
}

/// Digit image `i` as a gray image; MNIST is white ink on black, like a photo's
/// negative, which is fine for a classifier.
fn gray(i: usize) -> GrayImage {
    GrayImage::from_raw(28, 28, digits().images.image(i).to_vec()).unwrap()
}

/// Writes `per_class` digits of each class of `CLASSES` into `root/<name>/`, in mixed
/// sizes and colour modes (see `write_digit_folder`). Returns the root.
fn write_folder(root: &Path, per_class: usize) -> PathBuf {
    let digits: Vec<u8> = CLASSES.iter().map(|c| c.0).collect();
    write_digit_folder(&DataDir::resolve(None), root, &digits, per_class).unwrap()
}

/// The folder, and the classifier trained on it with the default configuration,
/// computed once for the tests that read them.
fn trained() -> &'static (PathBuf, Trained) {
    static RUN: OnceLock<(PathBuf, Trained)> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = write_folder(&scratch("shared").join("digits"), PER_CLASS);
        let folder = ImageFolder::scan(&root).unwrap();
        let mut backbone = RandomConv::new(SIZE, 0);
        let t = train(&folder, &mut backbone, &FolderConfig::default()).unwrap();
        (root, t)
    })
}

/// The error of `r`, as the user sees it (`{:#}`: with its causes).
fn error<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

// ANCHOR: usage_scan
/// What a scan of the test folder finds: class names and images per class.
pub fn scanned_classes() -> (Vec<String>, Vec<usize>) {
    let folder = ImageFolder::scan(&trained().0).unwrap();
    (folder.classes.clone(), folder.counts())
}
// ANCHOR_END: usage_scan

#[test]
fn classes_are_the_sorted_subfolder_names() {
    let (classes, counts) = scanned_classes();
    assert_eq!(classes, ["one", "seven", "zero"]);
    assert_eq!(counts, [PER_CLASS; 3]);
}

#[test]
fn files_are_found_by_extension_in_any_case_and_others_are_ignored() {
    let root = write_folder(&scratch("extensions"), 5);
    std::fs::write(root.join("zero/notes.txt"), "not an image").unwrap();
    std::fs::write(root.join("README.md"), "a file in the root").unwrap();
    std::fs::write(root.join("one/.DS_Store"), "hidden").unwrap();
    std::fs::create_dir_all(root.join("one/nested")).unwrap();
    let folder = ImageFolder::scan(&root).unwrap();
    assert_eq!(folder.counts(), [5, 5, 5]);
    // The upper-case .PNG files and the .jpg files are read.
    assert!(folder
        .files
        .iter()
        .any(|(p, _)| p.extension().unwrap() == "PNG"));
    assert!(folder
        .files
        .iter()
        .any(|(p, _)| p.extension().unwrap() == "jpg"));
    let mut ignored: Vec<String> = folder
        .ignored
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    ignored.sort();
    assert_eq!(ignored, ["README.md", "one/nested", "zero/notes.txt"]);
    assert!(is_image_file(Path::new("a.JpEg")) && !is_image_file(Path::new("a.gif")));
}

#[test]
fn images_of_any_size_and_colour_mode_load_as_rgb_squares() {
    let folder = ImageFolder::scan(&write_folder(&scratch("modes"), 8)).unwrap();
    let all: Vec<usize> = (0..folder.len()).collect();
    let loaded = folder.load(&all, SIZE, BadImages::Fail).unwrap();
    assert_eq!(loaded.data.x.shape(), [folder.len(), 3, SIZE, SIZE]);
    assert!(loaded.data.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(
        loaded.data.labels(),
        folder.files.iter().map(|f| f.1).collect::<Vec<_>>()
    );
    // A gray file gives equal channels; the tinted RGB file (red v, blue 255 - v)
    // does not.
    let find = |suffix: &str| {
        folder
            .files
            .iter()
            .position(|(p, _)| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    let (g, c) = (find("zero_004.png"), find("zero_002.png"));
    let x = &loaded.data.x;
    let same = |i: usize| {
        let img = x.index_axis(ndarray::Axis(0), i);
        img.index_axis(ndarray::Axis(0), 0) == img.index_axis(ndarray::Axis(0), 2)
    };
    assert!(same(g) && !same(c));
    // An RGBA file loads like its RGB pixels.
    let rgba = load_image(&folder.files[find("zero_003.png")].0, SIZE).unwrap();
    assert_eq!(rgba.shape(), [3, SIZE, SIZE]);
}

#[test]
fn the_split_is_stratified_seeded_and_disjoint() {
    let folder = ImageFolder::scan(&trained().0).unwrap();
    let s = folder.split(0.2, 0).unwrap();
    assert_eq!(s.train.len() + s.val.len(), folder.len());
    assert!(s.val.iter().all(|i| !s.train.contains(i)));
    for k in 0..3 {
        let in_val = s.val.iter().filter(|&&i| folder.files[i].1 == k).count();
        assert_eq!(in_val, 6, "class {k}: 20 % of {PER_CLASS}");
    }
    assert_eq!(folder.split(0.2, 0).unwrap(), s);
    assert_ne!(folder.split(0.2, 1).unwrap(), s);
    // A tiny fraction still validates on one image per class.
    let tiny = folder.split(0.001, 0).unwrap();
    assert_eq!(tiny.val.len(), 3);
}

// ANCHOR: usage_accuracy
/// The validation accuracy of the classifier trained on the test folder, and chance
/// (one over the number of classes).
pub fn folder_accuracy() -> (f64, f64) {
    let t = &trained().1;
    let meta = &t.classifier.meta;
    (meta.val_accuracy, 1.0 / meta.classes.len() as f64)
}
// ANCHOR_END: usage_accuracy

#[test]
fn folder_classifier_is_well_above_chance() {
    let (acc, chance) = folder_accuracy();
    assert!(
        acc >= 0.8 && acc > 2.0 * chance,
        "accuracy {acc}, chance {chance}"
    );
    let t = &trained().1;
    // The confusion matrix counts every validation image once.
    let total: usize = t.confusion.iter().flatten().sum();
    assert_eq!(total, t.classifier.meta.n_val);
    assert_eq!(t.val_predictions.len(), total);
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    // A large step overfits the small folder soon, so early stopping stops the run.
    let folder = ImageFolder::scan(&trained().0).unwrap();
    let cfg = FolderConfig {
        lr: 0.05,
        patience: 2,
        ..FolderConfig::default()
    };
    let run =
        |cfg: &FolderConfig| train(&folder, &mut RandomConv::new(SIZE, 0), cfg).unwrap();
    let t = run(&cfg);
    let best = t.best_epoch.expect("early stopping records its best epoch");
    assert!(
        t.epochs < cfg.n_epochs && best < t.epochs,
        "{best} of {}",
        t.epochs
    );
    // The kept head is the head after the best epoch: a run that stops there has it.
    let short = run(&FolderConfig {
        n_epochs: best,
        ..cfg.clone()
    });
    let bits = |t: &Trained| -> Vec<u32> {
        let fc = &t.classifier.head.fc;
        fc.weight
            .value
            .iter()
            .chain(&fc.bias.value)
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&t), bits(&short));
}

#[test]
fn saved_model_predicts_the_same_classes_as_in_memory() {
    let (root, t) = trained();
    let dir = scratch("saved");
    // `Trained::save` takes `&mut`: train a twin with the same seed (deterministic).
    let folder = ImageFolder::scan(root).unwrap();
    let mut backbone = RandomConv::new(SIZE, 0);
    let mut twin = train(&folder, &mut backbone, &FolderConfig::default()).unwrap();
    assert_eq!(twin.val_predictions, t.val_predictions);
    let written = twin.save(&dir).unwrap();
    assert_eq!(written.len(), 4);
    let svg = std::fs::read_to_string(dir.join("confusion.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("seven"));
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("| zero |") && md.contains("recall"));

    let mut loaded = Classifier::load(&dir).unwrap();
    assert_eq!(loaded.meta, twin.classifier.meta);
    let paths: Vec<PathBuf> = t
        .val_predictions
        .iter()
        .map(|&(i, _)| folder.files[i].0.clone())
        .collect();
    let preds = loaded.predict(&mut backbone, &paths).unwrap();
    for (p, &(_, want)) in preds.iter().zip(&t.val_predictions) {
        assert_eq!(p.ranked[0].0, want, "{}", p.path.display());
        let total: f64 = p.ranked.iter().map(|r| r.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(p.ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    // Another backbone is refused: its features mean something else.
    let mut other = RandomConv::new(SIZE, 1);
    let e = error(loaded.predict(&mut other, &paths));
    assert!(
        e.contains("random-conv-0") && e.contains("random-conv-1"),
        "{e}"
    );
}

#[test]
fn cli_trains_on_a_folder_and_predicts() {
    let dir = scratch("cli");
    let root = write_folder(&dir.join("digits"), 12);
    let out = dir.join("model");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dlbook"))
            .args(args)
            .output()
            .expect("runs dlbook");
        let text = String::from_utf8_lossy(&o.stdout).to_string()
            + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), text)
    };
    let (ok, text) = run(&[
        "train".as_ref(),
        "folder".as_ref(),
        root.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--backbone".as_ref(),
        "random-conv".as_ref(),
        "--input-size".as_ref(),
        "32".as_ref(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("validation accuracy") && text.contains("true \\ predicted"));
    let image = root.join("seven/seven_005.PNG");
    let (ok, text) = run(&["predict".as_ref(), out.as_os_str(), image.as_os_str()]);
    assert!(ok, "{text}");
    let line = text.lines().find(|l| l.contains("seven_005")).expect(&text);
    // The top class, then its probability.
    assert_eq!(
        line.split(": ").nth(1).unwrap().split(' ').next(),
        Some("seven"),
        "{line}"
    );
    // A bad folder fails with the message and a non-zero status.
    let (ok, text) = run(&[
        "train".as_ref(),
        "folder".as_ref(),
        dir.join("nope").as_os_str(),
    ]);
    assert!(!ok && text.contains("no such folder"), "{text}");
    // A model folder inside the image folder is refused.
    let inside = root.join("model");
    let (ok, text) = run(&[
        "train".as_ref(),
        "folder".as_ref(),
        root.as_os_str(),
        "--out".as_ref(),
        inside.as_os_str(),
    ]);
    assert!(
        !ok && text.contains("taken for a class") && !inside.exists(),
        "{text}"
    );
}

// Every bad input gives a clear error.

#[test]
fn missing_root_is_a_clear_error() {
    let e = error(ImageFolder::scan(&scratch("missing").join("nope")));
    assert!(
        e.contains("nope: no such folder") && e.contains("one subfolder per class"),
        "{e}"
    );
}

#[test]
fn a_file_instead_of_a_folder_is_a_clear_error() {
    let f = scratch("file").join("x.png");
    std::fs::write(&f, "x").unwrap();
    let e = error(ImageFolder::scan(&f));
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn no_class_folders_is_a_clear_error() {
    let root = scratch("noclasses");
    std::fs::write(root.join("a.png"), "x").unwrap();
    let e = error(ImageFolder::scan(&root));
    assert!(
        e.contains("no class folders") && e.contains("root/cat/1.jpg"),
        "{e}"
    );
    // Pointed at one class's folder: the message says so.
    let class = write_folder(&scratch("oneclassfolder"), 2).join("zero");
    let e = error(ImageFolder::scan(&class));
    assert!(
        e.contains("2 images directly inside") && e.contains("folder above"),
        "{e}"
    );
}

#[test]
fn a_class_folder_without_images_is_named() {
    let root = write_folder(&scratch("emptyclass"), 3);
    std::fs::create_dir_all(root.join("eight")).unwrap();
    std::fs::write(root.join("eight/readme.txt"), "no images here").unwrap();
    let e = error(ImageFolder::scan(&root));
    assert!(e.contains("class `eight` has no PNG or JPEG images"), "{e}");
}

#[test]
fn one_class_is_a_clear_error() {
    let root = scratch("oneclass");
    std::fs::create_dir_all(root.join("cat")).unwrap();
    gray(0).save(root.join("cat/a.png")).unwrap();
    let e = error(ImageFolder::scan(&root));
    assert!(
        e.contains("only one class (`cat`)") && e.contains("at least two"),
        "{e}"
    );
}

#[test]
fn a_class_with_one_image_cannot_be_split() {
    let root = write_folder(&scratch("single"), 4);
    std::fs::create_dir_all(root.join("eight")).unwrap();
    gray(0).save(root.join("eight/a.png")).unwrap();
    let folder = ImageFolder::scan(&root).unwrap();
    let e = error(folder.split(0.2, 0));
    assert!(
        e.contains("class `eight` has 1 image") && e.contains("validate"),
        "{e}"
    );
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let e = error(folder.split(bad, 0));
        assert!(e.contains("between 0 and 1"), "{e}");
    }
}

/// A folder with a corrupt PNG (garbage bytes) and a truncated JPEG in class `zero`.
fn folder_with_bad_files(test: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = write_folder(&scratch(test), 10);
    let garbage = root.join("zero/garbage.png");
    std::fs::write(&garbage, b"this is not a PNG file at all").unwrap();
    let jpeg = std::fs::read(root.join("zero/zero_000.jpg")).unwrap();
    let truncated = root.join("zero/truncated.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 3]).unwrap();
    (root, garbage, truncated)
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_file() {
    let (root, garbage, _) = folder_with_bad_files("corrupt");
    let folder = ImageFolder::scan(&root).unwrap();
    let e = error(train(
        &folder,
        &mut RandomConv::new(SIZE, 0),
        &FolderConfig::default(),
    ));
    assert!(
        e.contains(&*garbage.to_string_lossy()) || e.contains("truncated.jpg"),
        "{e}"
    );
    assert!(e.contains("--skip-bad"), "{e}");
}

#[test]
fn skip_bad_leaves_out_corrupt_images_and_reports_them() {
    let (root, garbage, truncated) = folder_with_bad_files("skip");
    let folder = ImageFolder::scan(&root).unwrap();
    let cfg = FolderConfig {
        bad_images: BadImages::Skip,
        ..FolderConfig::default()
    };
    let t = train(&folder, &mut RandomConv::new(SIZE, 0), &cfg).unwrap();
    let mut skipped: Vec<&PathBuf> = t.skipped.iter().map(|(p, _)| p).collect();
    skipped.sort();
    assert_eq!(skipped, [&garbage, &truncated]);
    assert_eq!(
        t.classifier.meta.n_train + t.classifier.meta.n_val,
        folder.len() - 2
    );
}

#[test]
fn a_damaged_model_folder_is_a_clear_error() {
    let dir = scratch("badmodel");
    let e = error(Classifier::load(&dir));
    assert!(
        e.contains("model.json") && e.contains("dlbook train folder"),
        "{e}"
    );
    std::fs::write(dir.join("model.json"), "{\"format\": 1}").unwrap();
    let e = error(Classifier::load(&dir));
    assert!(e.contains("not a model description"), "{e}");
    // A description whose head does not fit the weights.
    let mut twin = {
        let folder = ImageFolder::scan(&write_folder(&dir.join("digits"), 4)).unwrap();
        let cfg = FolderConfig {
            n_epochs: 2,
            ..FolderConfig::default()
        };
        train(&folder, &mut RandomConv::new(SIZE, 0), &cfg).unwrap()
    };
    let model = dir.join("model");
    twin.save(&model).unwrap();
    let meta_path = model.join("model.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(&meta_path, text.replace("\"zero\"", "\"zero\", \"eight\"")).unwrap();
    let e = error(Classifier::load(&model));
    assert!(
        e.contains("head.safetensors") && e.contains("fc.weight"),
        "{e}"
    );
}

/// The backbone trait is what a pre-trained network implements: the test backbone
/// reports its size and feature width, and gives one row of features per image.
#[test]
fn backbone_gives_one_row_of_features_per_image() {
    let mut b = RandomConv::new(SIZE, 3);
    assert_eq!(
        (b.name(), b.input_size(), b.feature_dim()),
        ("random-conv-3", SIZE, 512)
    );
    let x = ndarray::ArrayD::from_shape_fn(vec![5, 3, SIZE, SIZE], |i| {
        ((i[0] + i[1] * 3 + i[2] * 7 + i[3]) % 11) as f32 / 10.0
    });
    let f = b.features(&x);
    assert_eq!(f.dim(), (5, 512));
    assert!(f.iter().all(|v| v.is_finite()));
    // Different images, different features.
    assert_ne!(f.row(0), f.row(1));
}

// The experiment the chapter shows: `dlbook train folder` on five digits.

fn digits_run() -> &'static dlbook::report::Report {
    dlbook::experiments::quick("folder_digits", &DataDir::resolve(None)).unwrap()
}

// ANCHOR: usage_digits_accuracy
/// The validation accuracy of the `folder_digits` run, and chance.
pub fn digits_accuracy() -> (f64, f64) {
    let r = digits_run();
    (
        r.get_fact("val_accuracy").unwrap(),
        r.get_fact("chance").unwrap(),
    )
}
// ANCHOR_END: usage_digits_accuracy

#[test]
fn imagenet_features_classify_the_digit_folder_well_above_chance() {
    let r = digits_run();
    assert_eq!(
        r.config["backbone"],
        serde_json::json!(EfficientNetLite0::NAME)
    );
    let (acc, chance) = digits_accuracy();
    assert!(
        acc >= 0.8 && acc >= 3.0 * chance,
        "accuracy {acc}, chance {chance}"
    );
}

/// Within 5 points (five of the 100 validation images) of the random convolutions, or
/// below them.
#[test]
fn imagenet_features_are_no_better_than_random_ones_on_digits() {
    let r = digits_run();
    let (acc, _) = digits_accuracy();
    let baseline = r.get_fact("baseline_val_accuracy").unwrap();
    assert_eq!(r.get_fact("n_val").unwrap(), 100.0);
    assert!(
        baseline >= 0.8 && acc <= baseline + 0.05,
        "ImageNet {acc}, random convolutions {baseline}"
    );
}

#[test]
fn the_confusion_figure_shows_the_confusion_table() {
    let r = digits_run();
    let table = r.table("confusion").unwrap();
    let fig = r.figures.iter().find(|f| f.name == "confusion").unwrap();
    let dlbook::report::Plot::Heatmap {
        values, row_labels, ..
    } = &fig.plot
    else {
        panic!("the confusion figure is a heatmap");
    };
    for (row, (want, label)) in table.rows.iter().zip(values.iter().zip(row_labels)) {
        assert_eq!(row[0], dlbook::report::Value::Text(label.clone()));
        let got: Vec<f64> = row[1..].iter().map(|v| v.number().unwrap()).collect();
        assert_eq!(&got, want);
    }
    // Every validation image is counted once.
    let total: f64 = values.iter().flatten().sum();
    assert_eq!(total, r.get_fact("n_val").unwrap());
}

/// The pre-trained backbone plugs into the same pipeline: EfficientNet-Lite0 without
/// its ImageNet classifier gives 1280 features per image, and a saved model names it so
/// that `backbone_named` (what `dlbook predict` calls) builds it again. At 64 pixels,
/// to keep the test fast; the pipeline, not the accuracy, is under test.
#[test]
fn efficientnet_backbone_trains_and_is_found_again_by_name() {
    let data = DataDir::resolve(None);
    let mut b = EfficientNetLite0::load(&data, 64).unwrap();
    assert_eq!(
        (b.name(), b.input_size(), b.feature_dim()),
        ("efficientnet-lite0", 64, 1280)
    );
    let folder = ImageFolder::scan(&write_folder(&scratch("efficientnet"), 4)).unwrap();
    let cfg = FolderConfig {
        val_fraction: 0.25,
        n_epochs: 5,
        ..FolderConfig::default()
    };
    let mut t = train(&folder, &mut b, &cfg).unwrap();
    assert_eq!(t.classifier.meta.backbone, "efficientnet-lite0");
    let dir = scratch("efficientnet-model");
    t.save(&dir).unwrap();
    let mut loaded = Classifier::load(&dir).unwrap();
    let meta = loaded.meta.clone();
    let mut again = backbone_named(&data, &meta.backbone, meta.input_size).unwrap();
    let paths: Vec<PathBuf> = t
        .val_predictions
        .iter()
        .map(|&(i, _)| folder.files[i].0.clone())
        .collect();
    let preds = loaded.predict(again.as_mut(), &paths).unwrap();
    let got: Vec<usize> = preds.iter().map(|p| p.ranked[0].0).collect();
    let want: Vec<usize> = t.val_predictions.iter().map(|p| p.1).collect();
    assert_eq!(got, want);
    let e = error(backbone_named(&data, "resnet-50", 224));
    assert!(
        e.contains("resnet-50") && e.contains("efficientnet-lite0"),
        "{e}"
    );
}
