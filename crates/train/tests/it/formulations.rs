//! The fast fused kernels, the candle-ops formulation and the conv2d reference compute the same
//! network: trained from the same weights on the same data they end at the same weights.

use candle_core::Device;
use lifesweep_train::{train, Activation, Formulation, Network, TrainControl, TrainParams};

use crate::small_params;

/// Trains the network of `params` with `formulation` and returns its flattened weights and
/// loss curve.
fn trained(params: &TrainParams, formulation: Formulation) -> (Vec<f32>, Vec<f64>) {
    let net = Network::new(params, &Device::Cpu)
        .unwrap()
        .with_formulation(formulation);
    let curve = train(&net, params, &TrainControl::unattended()).unwrap();
    let weights = net
        .weights()
        .unwrap()
        .iter()
        .flat_map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (weights, curve.iter().map(|p| p.loss).collect())
}

fn assert_same_training(params: &TrainParams, label: &str) {
    let (reference, reference_curve) = trained(params, Formulation::Conv2d);
    for formulation in [Formulation::Fused, Formulation::Ops] {
        let (weights, curve) = trained(params, formulation);
        let worst = weights
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "{label}: {formulation:?} weights differ from conv2d's by {worst}"
        );
        for (a, b) in curve.iter().zip(&reference_curve) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{label}: {formulation:?} loss {a} vs {b}"
            );
        }
    }
}

#[test]
fn fused_ops_and_conv2d_train_alike_with_leaky_relu_and_sigmoid() {
    assert_same_training(&small_params(), "leaky sigmoid");
}

#[test]
fn fused_ops_and_conv2d_train_alike_over_several_blocks() {
    let params = TrainParams {
        steps: 2,
        d_factor: 1.5,
        m_factor: 3,
        ..small_params()
    };
    assert_same_training(&params, "three blocks");
}

#[test]
fn fused_ops_and_conv2d_train_alike_without_sigmoid() {
    for activation in [Activation::ReLU, Activation::LeakyReLU] {
        let params = TrainParams {
            activation,
            use_sigmoid: false,
            steps: 2,
            ..small_params()
        };
        assert_same_training(&params, &format!("{activation} clamped"));
    }
}

#[test]
fn fused_ops_and_conv2d_train_alike_for_every_activation_with_normalize() {
    for activation in Activation::ALL {
        for normalize_shift in [false, true] {
            let params = TrainParams {
                activation,
                normalize: true,
                normalize_shift,
                steps: 2,
                ..small_params()
            };
            assert_same_training(
                &params,
                &format!("{activation} normalize shift {normalize_shift}"),
            );
        }
    }
}
