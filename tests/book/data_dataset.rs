//! The one dataset type: every loader's shapes and values, batches and epoch orders,
//! augmentation on any image size and channel count, and clear errors for bad files.

use std::io::Write;

use dlbook::augment::{
    self, augment_batch, augment_images, Noise, Rotate, Shift, Transform,
};
use dlbook::data::{
    self, shuffled_order, DataDir, Dataset, EpochOrder, FetchOptions, Split, TableLayout,
    TableSet, Targets,
};
use ndarray::{s, Array2, Array3, Array4, ArrayD, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data_io::scratch;

#[test]
fn mnist_loads_as_one_channel_images_of_bytes_over_255() {
    let dir = DataDir::resolve(None);
    let raw = data::mnist(&dir, Split::Test).unwrap();
    let ds = Dataset::mnist(&dir, Split::Test, 300).unwrap();
    assert_eq!(ds.x.shape(), [300, 1, 28, 28]);
    assert_eq!(ds.example_shape(), [1, 28, 28]);
    // Every value is its byte over 255, in f32, in file order.
    assert!(ds
        .x
        .iter()
        .zip(&raw.images.pixels)
        .all(|(&v, &p)| v == f32::from(p) / 255.0));
    let labels: Vec<usize> = raw.labels[..300].iter().map(|&l| usize::from(l)).collect();
    assert_eq!(ds.labels(), labels);
    // Asking for more than there is gives all of it.
    assert_eq!(
        Dataset::mnist(&dir, Split::Test, usize::MAX).unwrap().len(),
        10_000
    );
}

#[test]
fn fashion_mnist_is_optional_and_loads_from_its_package() {
    // Not among the required datasets: a folder without it still verifies.
    let required = data::verify(&DataDir::resolve(None), &[]).unwrap();
    assert!(required.iter().all(|r| r.dataset != "fashion_mnist"));
    let d = scratch("fashion");
    let dir = DataDir::new(&d);
    let opts = FetchOptions {
        allow_packages: true,
        ..Default::default()
    };
    // Until fetched, the loader says how to get it.
    let e = format!(
        "{:#}",
        Dataset::fashion_mnist(&dir, Split::Test, 1).unwrap_err()
    );
    assert!(e.contains("dlbook data fetch fashion_mnist"), "{e}");
    let got = data::fetch(&dir, &["fashion_mnist"], &opts).unwrap_or_else(|e| {
        panic!("{e:#}\n(the Debian package dataset-fashion-mnist provides it: .ci/setup)")
    });
    assert!(
        got.iter()
            .all(|o| o.source.contains("dataset-fashion-mnist")),
        "{got:?}"
    );
    let test = Dataset::fashion_mnist(&dir, Split::Test, usize::MAX).unwrap();
    assert_eq!(test.x.shape(), [10_000, 1, 28, 28]);
    let mut counts = [0usize; 10];
    test.labels().iter().for_each(|&l| counts[l] += 1);
    assert_eq!(counts, [1000; 10], "Fashion-MNIST's test set is balanced");
    let raw = data::fashion_mnist(&dir, Split::Test).unwrap();
    assert!(test
        .x
        .iter()
        .zip(&raw.images.pixels)
        .all(|(&v, &p)| v == f32::from(p) / 255.0));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn tabular_sets_load_as_tables_with_their_classes() {
    let dir = DataDir::resolve(None);
    let want: [(TableSet, usize, &[usize]); 5] = [
        (TableSet::Iris, 4, &[50, 50, 50]),
        (TableSet::Wine, 13, &[59, 71, 48]),
        (TableSet::BreastCancer, 30, &[212, 357]),
        (
            TableSet::Digits,
            64,
            &[178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
        ),
        (TableSet::Moons, 2, &[1000, 1000]),
    ];
    for (set, n_features, counts) in want {
        let table = data::read_table(&dir, set).unwrap();
        let ds = Dataset::table(&dir, set).unwrap();
        let n: usize = counts.iter().sum();
        assert_eq!(ds.x.shape(), [n, n_features], "{set:?}");
        assert_eq!(table.class_names.len(), counts.len(), "{set:?}");
        let mut c = vec![0; counts.len()];
        ds.labels().iter().for_each(|&l| c[l] += 1);
        assert_eq!(c, counts, "{set:?}");
        // The dataset is the table in f32.
        assert!(ds
            .flat()
            .iter()
            .zip(&table.features)
            .all(|(&a, &b)| a == b as f32));
    }
    let iris = data::read_table(&dir, TableSet::Iris).unwrap();
    assert_eq!(iris.class_names, ["setosa", "versicolor", "virginica"]);
    assert_eq!(iris.features.row(0).to_vec(), [5.1, 3.5, 1.4, 0.2]);
    let digits = data::read_table(&dir, TableSet::Digits).unwrap();
    assert!(digits.features.iter().all(|&v| (0.0..=16.0).contains(&v)));
}

/// The error of parsing `text`, with the context chain.
fn table_error(text: &str, layout: TableLayout) -> String {
    format!(
        "{:#}",
        data::parse_table(text, layout).expect_err("must be rejected")
    )
}

#[test]
fn malformed_tables_are_clear_errors() {
    let counts = TableLayout::Counts;
    let ok = "2,2,a,b\n1.5,2,0\n3,4,1\n";
    let t = data::parse_table(ok, counts).unwrap();
    assert_eq!(
        t.features,
        Array2::from_shape_vec((2, 2), vec![1.5, 2., 3., 4.]).unwrap()
    );
    assert_eq!(t.labels, [0, 1]);
    let e = table_error("3,2,a,b\n1.5,2,0\n3,4,1\n", counts);
    assert!(e.contains("promises 3 rows") && e.contains("has 2"), "{e}");
    let e = table_error("2,2,a,b\n1.5,2,0\n3,4\n", counts);
    assert!(
        e.contains("line 3") && e.contains("2 cells, expected 3"),
        "{e}"
    );
    let e = table_error("2,2,a,b\n1.5,x,0\n3,4,1\n", counts);
    assert!(e.contains("line 2") && e.contains("`x`"), "{e}");
    let e = table_error("2,2,a,b\n1.5,2,0\n3,4,2\n", counts);
    assert!(e.contains("label 2 is not below the 2 classes"), "{e}");
    let e = table_error("2,2,a,b\n1.5,2,0\n3,4,-1\n", counts);
    assert!(e.contains("label `-1`"), "{e}");
    let e = table_error("two,2,a,b\n1,2,0\n", counts);
    assert!(e.contains("line 1"), "{e}");
    let e = table_error("1,2\n1,2,0\n", counts);
    assert!(e.contains("names no classes"), "{e}");
    assert!(table_error("", counts).contains("no header"));
    assert!(table_error("1,2,a\n", counts).contains("no data rows"));
    assert!(table_error("1,2,a\nNaN,1,0\n", counts).contains("`NaN`"));
    // The other layouts: names in the header, or none.
    let t = data::parse_table("x,y,label\n0.5,1,1\n", TableLayout::Names).unwrap();
    assert_eq!((t.features.dim(), t.class_names.len()), ((1, 2), 2));
    let e = table_error("x,y,label\n0.5,1\n", TableLayout::Names);
    assert!(e.contains("line 2"), "{e}");
    let bare = TableLayout::Bare { n_classes: 10 };
    let e = table_error("0,16,3\n1,2,10\n", bare);
    assert!(e.contains("line 2") && e.contains("label 10"), "{e}");
}

#[test]
fn a_truncated_gzip_table_is_an_error_naming_the_file() {
    let d = scratch("table-gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all("0,1,2,3\n".repeat(200).as_bytes()).unwrap();
    let full = enc.finish().unwrap();
    let layout = TableLayout::Bare { n_classes: 4 };
    let p = d.join("t.csv.gz");
    std::fs::write(&p, &full).unwrap();
    assert_eq!(data::read_table_file(&p, layout).unwrap().labels.len(), 200);
    for cut in [0, 5, full.len() / 2, full.len() - 3] {
        std::fs::write(&p, &full[..cut]).unwrap();
        let e = format!("{:#}", data::read_table_file(&p, layout).unwrap_err());
        assert!(e.contains("t.csv.gz"), "cut at {cut}: {e}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Six examples of shape `(2, 3)` whose values name them (example `i` is all `i`), with
/// labels `i % 3` and lengths `i`.
fn toy() -> Dataset {
    let x = Array3::from_shape_fn((6, 2, 3), |(i, _, _)| i as f32).into_dyn();
    let y = Targets::Classes((0..6).map(|i| i % 3).collect());
    Dataset::new(x, y, Some((0..6).collect()))
}

#[test]
fn select_head_flat_and_batches_keep_examples_together() {
    let ds = toy();
    let sel = ds.select(&[4, 1]);
    assert_eq!(sel.x.shape(), [2, 2, 3]);
    assert!(sel.x.slice(s![0, .., ..]).iter().all(|&v| v == 4.0));
    assert_eq!(sel.labels(), [1, 1]);
    assert_eq!(sel.lengths, Some(vec![4, 1]));
    assert_eq!(ds.head(2), ds.select(&[0, 1]));
    assert_eq!(ds.head(100).len(), 6);
    assert_eq!(ds.flat().dim(), (6, 6));
    assert_eq!(ds.flat().row(5).to_vec(), [5.0; 6]);
    // Batches follow the order, the last one short.
    let order = [5, 0, 3, 2, 4];
    let batches: Vec<Dataset> = ds.batches(2, &order).collect();
    assert_eq!(
        batches.iter().map(Dataset::len).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    assert_eq!(batches[0], ds.select(&[5, 0]));
    assert_eq!(batches[2], ds.select(&[4]));
    // Regression targets travel with their rows too.
    let values = Array2::from_shape_fn((6, 2), |(i, j)| (10 * i + j) as f32);
    let reg = Dataset::new(ds.x.clone(), Targets::Values(values), None);
    match reg.select(&[3]).y {
        Targets::Values(v) => assert_eq!(v.row(0).to_vec(), [30.0, 31.0]),
        other => panic!("{other:?}"),
    }
}

#[test]
#[should_panic(expected = "5 targets for x of shape [6, 2, 3]")]
fn a_dataset_with_too_few_targets_panics_naming_the_shapes() {
    let x = ArrayD::zeros(vec![6, 2, 3]);
    Dataset::classes(x, vec![0; 5]);
}

#[test]
fn epoch_orders_match_the_shuffles_they_replace() {
    // EpochOrder: the same vector shuffled again every epoch.
    let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
    let mut epochs = EpochOrder::new(50);
    let mut order: Vec<usize> = (0..50).collect();
    for _ in 0..3 {
        order.shuffle(&mut b);
        assert_eq!(epochs.next(&mut a), order);
    }
    // shuffled_order: 0..n shuffled afresh; a different sequence from epoch 2 on.
    let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
    let mut again = EpochOrder::new(50);
    let first = shuffled_order(50, &mut a);
    assert_eq!(first, again.next(&mut b));
    assert_ne!(shuffled_order(50, &mut a), again.next(&mut b));
}

/// Three different 32 x 32 channels: a bright square, a bar, a gradient.
fn colour_image() -> Array3<f32> {
    Array3::from_shape_fn((3, 32, 32), |(c, r, col)| match c {
        0 => f32::from(u8::from((8..20).contains(&r) && (10..18).contains(&col))),
        1 => f32::from(u8::from((4..28).contains(&r) && col == 16)) * 0.5,
        _ => (r * 32 + col) as f32 / 1024.0,
    })
}

#[test]
fn augmentation_moves_every_channel_the_same_way() {
    let img = colour_image();
    let plane = |c: usize| {
        img.slice(s![c, .., ..])
            .iter()
            .copied()
            .collect::<Vec<f32>>()
    };
    let t = Shift { max: 3 };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // The shift the transform will draw, from a copy of its generator.
    let mut copy = rng.clone();
    let (dx, dy): (i32, i32) = (copy.random_range(-3..=3), copy.random_range(-3..=3));
    assert!((dx, dy) != (0, 0), "the seed must move the image");
    let out = t.apply(img.view(), &mut rng);
    assert_eq!(out.dim(), (3, 32, 32));
    for c in 0..3 {
        let got: Vec<f32> = out.slice(s![c, .., ..]).iter().copied().collect();
        assert_eq!(
            got,
            augment::shift(&plane(c), 32, 32, dx, dy),
            "channel {c}"
        );
    }
    // A rotation too: one angle for all three channels.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let deg: f32 = rng.clone().random_range(-20.0..=20.0);
    let out = Rotate { max_degrees: 20.0 }.apply(img.view(), &mut rng);
    for c in 0..3 {
        let got: Vec<f32> = out.slice(s![c, .., ..]).iter().copied().collect();
        assert_eq!(got, augment::rotate(&plane(c), 32, 32, deg.to_radians()));
    }
    // Noise is drawn per value: equal channels get different noise.
    let grey = Array3::from_elem((3, 32, 32), 0.5f32);
    let noisy = Noise { std: 0.1 }.apply(grey.view(), &mut ChaCha8Rng::seed_from_u64(5));
    assert_ne!(noisy.slice(s![0, .., ..]), noisy.slice(s![1, .., ..]));
}

#[test]
fn batch_augmentation_is_per_image_and_keeps_the_flat_entry_point() {
    let pipeline = augment::digits_pipeline(2, 10.0, 0.05);
    // (4, 3, 32, 32): image b is the colour image scaled by (b + 1) / 4.
    let img = colour_image();
    let batch = Array4::from_shape_fn((4, 3, 32, 32), |(b, c, r, col)| {
        img[[c, r, col]] * (b + 1) as f32 / 4.0
    })
    .into_dyn();
    let out = augment_images(&batch, &pipeline, &mut ChaCha8Rng::seed_from_u64(9));
    assert_eq!(out.shape(), [4, 3, 32, 32]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for b in 0..4 {
        let one = batch.index_axis(Axis(0), b).into_dimensionality().unwrap();
        assert_eq!(
            pipeline.apply(one, &mut rng).into_dyn(),
            out.index_axis(Axis(0), b)
        );
    }
    // The flat (N, h * w) entry point is the same computation on (N, 1, h, w).
    let rows =
        Array2::from_shape_fn((5, 28 * 28), |(i, j)| ((i * 7 + j) % 13) as f32 / 13.0);
    let flat = augment_batch(&rows, 28, 28, &pipeline, &mut ChaCha8Rng::seed_from_u64(2));
    let shaped = rows
        .clone()
        .into_shape_with_order((5, 1, 28, 28))
        .unwrap()
        .into_dyn();
    let four = augment_images(&shaped, &pipeline, &mut ChaCha8Rng::seed_from_u64(2));
    assert_eq!(
        flat.into_dyn(),
        four.into_shape_with_order(vec![5, 784]).unwrap()
    );
}

#[test]
#[should_panic(expected = "expected (B, C, H, W), got [2, 784]")]
fn batch_augmentation_names_a_wrong_shape() {
    let x = ArrayD::zeros(vec![2, 784]);
    augment_images(&x, &Shift { max: 1 }, &mut ChaCha8Rng::seed_from_u64(0));
}

#[test]
fn loaders_refuse_a_corrupt_file_and_say_how_to_fix_it() {
    let src = DataDir::resolve(None);
    let d = scratch("loader");
    let dir = DataDir::new(&d);
    // A missing file.
    let e = format!("{:#}", Dataset::table(&dir, TableSet::Iris).unwrap_err());
    assert!(
        e.contains("iris.csv") && e.contains("dlbook data fetch"),
        "{e}"
    );
    // A file with one byte changed.
    std::fs::create_dir_all(d.join("sklearn")).unwrap();
    let mut bytes = std::fs::read(src.path("sklearn/wine_data.csv")).unwrap();
    bytes[100] ^= 1;
    std::fs::write(dir.path("sklearn/wine_data.csv"), &bytes).unwrap();
    let e = format!("{:#}", Dataset::table(&dir, TableSet::Wine).unwrap_err());
    assert!(e.contains("wine_data.csv") && e.contains("CORRUPT"), "{e}");
    let e = format!("{:#}", Dataset::mnist(&dir, Split::Test, 10).unwrap_err());
    assert!(
        e.contains("t10k-images") && e.contains("dlbook data fetch"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
