use candle_core::Device;
use lifesweep_life::Rule;
use lifesweep_train::{evaluate, presolved_network, Activation, Network, TrainParams};

use crate::small_params;

fn presolved_score(params: &TrainParams) -> (f64, f64) {
    let net = presolved_network(params, &Device::Cpu).unwrap();
    let eval = evaluate(&net, params, &Device::Cpu).unwrap();
    (eval.success_rate, eval.cell_accuracy)
}

#[test]
fn presolved_networks_are_exact_for_both_rules_any_steps_and_width() {
    for rule in Rule::ALL {
        for steps in 1..=10 {
            for m_factor in 1..=4 {
                for use_sigmoid in [false, true] {
                    let params = TrainParams {
                        rule,
                        steps,
                        m_factor,
                        use_sigmoid,
                        ..TrainParams::default()
                    };
                    let score = presolved_score(&params);
                    assert_eq!(
                        score,
                        (1.0, 1.0),
                        "{rule} steps {steps} m {m_factor} sigmoid {use_sigmoid}"
                    );
                }
            }
        }
    }
}

#[test]
fn presolved_networks_are_exact_on_larger_boards() {
    for rule in Rule::ALL {
        for steps in [1, 2, 5] {
            let params = TrainParams {
                rule,
                steps,
                eval_board_size: 16,
                eval_boards: 200,
                ..TrainParams::default()
            };
            assert_eq!(presolved_score(&params), (1.0, 1.0), "{rule} steps {steps}");
        }
    }
}

/// The seed's weights are exact with ReLU whatever the options; with LeakyReLU the negative
/// slope leaks small errors that stay below the thresholds for one step (two for
/// von-neumann), and grow past them with more.
#[test]
fn presolve_is_exact_with_normalize_shift_and_extra_depth() {
    let mut cases = Vec::new();
    for rule in Rule::ALL {
        for (normalize, normalize_shift) in [(false, true), (true, false), (true, true)] {
            for (steps, d_factor) in [(1, 1.0), (2, 1.0), (2, 2.0), (3, 1.5), (5, 1.0)] {
                cases.push((
                    Activation::ReLU,
                    rule,
                    normalize,
                    normalize_shift,
                    steps,
                    d_factor,
                ));
            }
            cases.push((
                Activation::LeakyReLU,
                rule,
                normalize,
                normalize_shift,
                1,
                1.0,
            ));
            cases.push((
                Activation::LeakyReLU,
                rule,
                normalize,
                normalize_shift,
                1,
                3.0,
            ));
        }
        cases.push((Activation::LeakyReLU, Rule::VonNeumann, false, true, 2, 1.0));
    }
    for (activation, rule, normalize, normalize_shift, steps, d_factor) in cases {
        let params = TrainParams {
            rule,
            steps,
            d_factor,
            m_factor: 3,
            activation,
            normalize,
            normalize_shift,
            ..TrainParams::default()
        };
        let label = format!("{activation} {rule} normalize {normalize} shift {normalize_shift} steps {steps} d {d_factor}");
        assert_eq!(presolved_score(&params), (1.0, 1.0), "{label}");
    }
}

#[test]
fn presolve_flag_presolves_every_block_and_solve_layers_only_the_listed_ones() {
    let base = TrainParams {
        steps: 3,
        m_factor: 2,
        ..TrainParams::default()
    };
    let random = Network::new(&base, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap();
    let solved = presolved_network(&base, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap();
    let with_presolve = Network::new(
        &TrainParams {
            presolve: true,
            ..base.clone()
        },
        &Device::Cpu,
    )
    .unwrap()
    .weights()
    .unwrap();
    let with_layers = TrainParams {
        solve_layers: vec![1],
        ..base.clone()
    };
    let partial = Network::new(&with_layers, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap();
    let same =
        |a: &[(String, candle_core::Tensor)], b: &[(String, candle_core::Tensor)], block: &str| {
            a.iter()
                .zip(b)
                .filter(|(x, _)| x.0.starts_with(block))
                .all(|(x, y)| {
                    x.0 == y.0
                        && x.1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                            == y.1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                })
        };
    for block in ["block0", "block1", "block2"] {
        assert!(
            same(&with_presolve, &solved, block),
            "{block} presolved by the flag"
        );
    }
    assert!(same(&partial, &random, "block0"));
    assert!(same(&partial, &solved, "block1"));
    assert!(same(&partial, &random, "block2"));
    assert!(!same(&random, &solved, "block1"));
}

#[test]
fn presolved_weights_are_the_seed_solution() {
    let params = TrainParams {
        m_factor: 2,
        use_sigmoid: true,
        ..TrainParams::default()
    };
    let weights = presolved_network(&params, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap();
    let get = |name: &str| {
        let (_, t) = weights.iter().find(|(n, _)| n == name).unwrap();
        (
            t.dims().to_vec(),
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        )
    };
    let (dims, conv3) = get("block0.conv3.weight");
    assert_eq!(dims, [4, 1, 3, 3]);
    let kernel = [0.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0];
    assert_eq!(&conv3[..9], &kernel);
    assert_eq!(&conv3[9..18], &kernel);
    assert!(conv3[18..].iter().all(|&w| w == 0.0));
    assert_eq!(
        get("block0.conv3.bias"),
        (vec![4], vec![-2.0, -3.5, 0.0, 0.0])
    );
    assert_eq!(
        get("block0.conv1a.weight"),
        (
            vec![2, 4, 1, 1],
            vec![-2.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        )
    );
    assert_eq!(get("block0.conv1a.bias"), (vec![2], vec![1.0, 0.0]));
    assert_eq!(
        get("block0.conv1b.weight"),
        (vec![1, 2, 1, 1], vec![-20.0, 0.0])
    );
    assert_eq!(get("block0.conv1b.bias"), (vec![1], vec![10.0]));
}

#[test]
fn a_presolved_network_survives_training() {
    let params = TrainParams {
        presolve: true,
        batches: 100,
        ..small_params()
    };
    let outcome = lifesweep_train::train_and_evaluate(
        &params,
        &Device::Cpu,
        "cpu",
        &lifesweep_train::TrainControl::unattended(),
    )
    .unwrap();
    assert!(outcome.metrics.training_success, "{:?}", outcome.metrics);
}
