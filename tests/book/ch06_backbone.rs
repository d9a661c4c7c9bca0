//! Chapter 6, the pre-trained backbone: reading PyTorch's file, the network in ndarray and
//! in candle agreeing on the same weights, and ImageNet predictions on real photos.

use dlbook::data::DataDir;
use dlbook::models::pth::read_pth;

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

#[test]
fn photo_predictions_candle() {
    use dlbook::data::image::{read_rgb, resize_and_center_crop, to_chw};
    use dlbook::models::candle_efficientnet::CandleEfficientNet;
    use dlbook::models::efficientnet::{load_state_dict, normalize};
    let d = data();
    let net = CandleEfficientNet::new(&load_state_dict(&d).unwrap()).unwrap();
    let names = dlbook::data::imagenet::imagenet_classes(&d).unwrap();
    for p in ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"] {
        let img = read_rgb(&d.path(&format!("photos/{p}"))).unwrap();
        let x = resize_and_center_crop(&to_chw(&img.view()).view(), 224, 0.875)
            .mapv(normalize);
        let t = candle_core::Tensor::from_vec(
            x.iter().copied().collect::<Vec<_>>(),
            (1, 3, 224, 224),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let logits: Vec<f32> = net
            .forward(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut idx: Vec<usize> = (0..1000).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        println!(
            "{p}: {:?}",
            idx[..5]
                .iter()
                .map(|&i| (&names[i], logits[i]))
                .collect::<Vec<_>>()
        );
    }
}
