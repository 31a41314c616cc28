use candle_core::{Device, Tensor};
use lifesweep_train::{evaluate, presolved_network, Network, Pass, TrainError, TrainParams};

use crate::small_params;

#[test]
fn weights_are_named_and_shaped_like_pytorch_and_round_trip() {
    let params = TrainParams {
        steps: 2,
        m_factor: 3,
        ..small_params()
    };
    let net = Network::new(&params, &Device::Cpu).unwrap();
    let weights = net.weights().unwrap();
    let names: Vec<(&str, Vec<usize>)> = weights
        .iter()
        .take(6)
        .map(|(n, t)| (n.as_str(), t.dims().to_vec()))
        .collect();
    assert_eq!(
        names,
        [
            ("block0.conv3.weight", vec![6, 1, 3, 3]),
            ("block0.conv3.bias", vec![6]),
            ("block0.conv1a.weight", vec![3, 6, 1, 1]),
            ("block0.conv1a.bias", vec![3]),
            ("block0.conv1b.weight", vec![1, 3, 1, 1]),
            ("block0.conv1b.bias", vec![1]),
        ]
    );
    assert_eq!(weights.len(), 12);
    let total: usize = weights.iter().map(|(_, t)| t.elem_count()).sum();
    assert_eq!(total as u64, net.param_count());

    let rebuilt = Network::from_weights(&params, &Device::Cpu, &weights).unwrap();
    let boards = Tensor::from_vec(
        (0..400)
            .map(|i| ((i * 7) % 3 == 0) as u8 as f32)
            .collect::<Vec<_>>(),
        (4, 10, 10),
        &Device::Cpu,
    )
    .unwrap();
    let a = net
        .forward(&boards, Pass::Eval)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = rebuilt
        .forward(&boards, Pass::Eval)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn from_weights_names_what_does_not_fit() {
    let params = small_params();
    let weights = presolved_network(&params, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap();
    let missing = &weights[1..];
    match Network::from_weights(&params, &Device::Cpu, missing) {
        Err(TrainError::BadWeights { name, .. }) => assert_eq!(name, "block0.conv3.weight"),
        other => panic!("expected a missing weight, got {:?}", other.err()),
    }
    let mut renamed = weights.clone();
    renamed[0].0 = "block0.conv5.weight".into();
    assert!(matches!(
        Network::from_weights(&params, &Device::Cpu, &renamed),
        Err(TrainError::BadWeights { .. })
    ));
    let wider = TrainParams {
        m_factor: 3,
        ..params.clone()
    };
    let err = Network::from_weights(&wider, &Device::Cpu, &weights)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("weight block0.conv3.weight: has 36 values, expected 54"),
        "{err}"
    );
}

#[test]
fn invalid_parameters_are_refused_with_their_key() {
    let params = TrainParams {
        batch_size: 0,
        ..small_params()
    };
    match Network::new(&params, &Device::Cpu) {
        Err(TrainError::InvalidParams { key, .. }) => assert_eq!(key, "batch_size"),
        other => panic!("expected invalid params, got {:?}", other.err()),
    }
    let net = presolved_network(&small_params(), &Device::Cpu).unwrap();
    assert!(matches!(
        evaluate(
            &net,
            &TrainParams {
                eval_boards: 0,
                ..small_params()
            },
            &Device::Cpu
        ),
        Err(TrainError::InvalidParams { .. })
    ));
}

#[test]
fn predict_gives_probabilities() {
    let params = TrainParams {
        activation: lifesweep_train::Activation::ReLU,
        ..small_params()
    };
    let net = presolved_network(&params, &Device::Cpu).unwrap();
    // a 2x2 block is stable under von-neumann
    let board: Vec<f32> = "....\n.##.\n.##.\n...."
        .chars()
        .filter(|c| *c != '\n')
        .map(|c| if c == '#' { 1.0 } else { 0.0 })
        .collect();
    let boards = Tensor::from_vec(board.clone(), (1, 4, 4), &Device::Cpu).unwrap();
    let p = net
        .predict(&boards)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (p, t) in p.iter().zip(&board) {
        assert!((p - t).abs() < 1e-3, "{p} vs {t}");
    }
}
