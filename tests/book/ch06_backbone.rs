//! Chapter 6, the pre-trained backbone: reading PyTorch's file, the network in ndarray and
//! in candle agreeing on the same weights, and ImageNet predictions on real photos.

use candle_core::{DType, Device, Tensor};
use dlbook::data::image::{read_rgb, resize_and_center_crop, to_chw};
use dlbook::data::DataDir;
use dlbook::models::candle_efficientnet::CandleEfficientNet;
use dlbook::models::efficientnet::{
    efficientnet_lite0, load_imagenet, load_state_dict, normalize, pretrained,
};
use dlbook::models::pth::read_pth;
use dlbook::nn::{Layer, Mode};
use ndarray::{ArrayD, Axis, IxDyn};

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

/// The four photos, `(4, 3, 224, 224)`, normalised for the network.
fn photos() -> ArrayD<f32> {
    let d = data();
    let views: Vec<_> = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"]
        .iter()
        .map(|p| {
            let img = read_rgb(&d.verified(&format!("photos/{p}")).unwrap()).unwrap();
            resize_and_center_crop(&to_chw(&img.view()).view(), 224, 0.875)
                .mapv(normalize)
        })
        .collect();
    let v: Vec<_> = views.iter().map(|a| a.view()).collect();
    ndarray::stack(Axis(0), &v).unwrap().into_dyn()
}

#[test]
fn scratch_and_candle_agree() {
    let x = photos();
    let mut net = pretrained(&data()).unwrap();
    let t0 = std::time::Instant::now();
    let ours = net.forward(&x, Mode::Eval);
    println!("scratch: {:?}", t0.elapsed());
    let state = load_state_dict(&data()).unwrap();
    let twin = CandleEfficientNet::new(&state, DType::F32).unwrap();
    let t = Tensor::from_vec(
        x.iter().copied().collect::<Vec<_>>(),
        x.shape(),
        &Device::Cpu,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let theirs: Vec<f32> = twin
        .forward(&t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    println!("candle: {:?}", t0.elapsed());
    let theirs = ArrayD::from_shape_vec(IxDyn(&[4, 1000]), theirs).unwrap();
    let diff = (&ours - &theirs)
        .mapv(f32::abs)
        .fold(0.0f32, |a, &b| a.max(b));
    println!("max |logit diff| {diff}");
    assert!(diff < 1e-3);
    let names = dlbook::data::imagenet::imagenet_classes(&data()).unwrap();
    for row in ours.axis_iter(Axis(0)) {
        let mut idx: Vec<usize> = (0..1000).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        println!(
            "{:?}",
            idx[..5].iter().map(|&i| &names[i]).collect::<Vec<_>>()
        );
    }
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
