//! Fused multi-seed training gives each run the result of its separate training.

use candle_core::Device;
use lifesweep_train::{
    train_and_evaluate, train_and_evaluate_many, train_and_evaluate_many_with, Activation,
    Formulation, TrainControl, TrainError, TrainOutcome, TrainParams,
};

use crate::small_params;

fn seeds(base: &TrainParams, seeds: &[u64]) -> Vec<TrainParams> {
    seeds
        .iter()
        .map(|&seed| TrainParams {
            seed,
            ..base.clone()
        })
        .collect()
}

fn flat_weights(outcome: &TrainOutcome) -> Vec<f32> {
    outcome
        .weights
        .iter()
        .flat_map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

fn separate(params: &[TrainParams]) -> Vec<TrainOutcome> {
    params
        .iter()
        .map(|p| train_and_evaluate(p, &Device::Cpu, "cpu", &TrainControl::unattended()).unwrap())
        .collect()
}

#[test]
fn fused_runs_on_the_cpu_equal_separate_runs_bit_for_bit() {
    for (activation, normalize, steps) in [
        (Activation::LeakyReLU, false, 1),
        (Activation::RReLU, true, 2),
    ] {
        let base = TrainParams {
            activation,
            normalize,
            steps,
            ..small_params()
        };
        let params = seeds(&base, &[3, 1, 4]);
        let fused =
            train_and_evaluate_many(&params, &Device::Cpu, "cpu", &TrainControl::unattended());
        for (outcome, alone) in fused.into_iter().zip(separate(&params)) {
            let outcome = outcome.unwrap();
            let strip = |m: &lifesweep_train::RunMetrics| lifesweep_train::RunMetrics {
                wall_seconds: 0.0,
                ..m.clone()
            };
            assert_eq!(
                strip(&outcome.metrics),
                strip(&alone.metrics),
                "{activation}"
            );
            let (a, b) = (flat_weights(&outcome), flat_weights(&alone));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{activation}"
            );
        }
    }
}

/// The batched candle network (the fused path of CUDA devices), run on the CPU.
#[test]
fn batched_fused_runs_train_like_separate_runs() {
    for (activation, normalize, steps, use_sigmoid) in [
        (Activation::LeakyReLU, false, 1, true),
        (Activation::ReLU, false, 2, false),
        (Activation::RReLU, true, 2, true),
    ] {
        let base = TrainParams {
            activation,
            normalize,
            steps,
            use_sigmoid,
            ..small_params()
        };
        let params = seeds(&base, &[2, 7]);
        let batched = train_and_evaluate_many_with(
            &params,
            &Device::Cpu,
            "cpu",
            &TrainControl::unattended(),
            Formulation::Ops,
        );
        for (outcome, alone) in batched.into_iter().zip(separate(&params)) {
            let outcome = outcome.unwrap();
            let (a, b) = (flat_weights(&outcome), flat_weights(&alone));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{activation}: weights differ by {worst}");
            let curves = outcome
                .metrics
                .loss_curve
                .iter()
                .zip(&alone.metrics.loss_curve);
            for (x, y) in curves {
                assert_eq!(x.batch, y.batch);
                assert!(
                    (x.loss - y.loss).abs() <= 1e-5 * y.loss.max(1.0),
                    "{activation}: {x:?} vs {y:?}"
                );
            }
            assert_eq!(outcome.metrics.param_count, alone.metrics.param_count);
        }
    }
}

#[test]
fn a_group_that_is_not_one_grid_point_is_refused() {
    let mut params = seeds(&small_params(), &[1, 2]);
    params[1].m_factor = 3;
    let outcomes =
        train_and_evaluate_many(&params, &Device::Cpu, "cpu", &TrainControl::unattended());
    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes {
        match outcome {
            Err(TrainError::InvalidParams { key, .. }) => assert_eq!(key, "seed"),
            other => panic!(
                "expected invalid params, got {:?}",
                other.map(|o| o.metrics)
            ),
        }
    }
    assert!(
        train_and_evaluate_many(&[], &Device::Cpu, "cpu", &TrainControl::unattended()).is_empty()
    );
}

#[test]
fn fused_runs_stop_and_diverge_like_separate_runs() {
    let params = seeds(&small_params(), &[1, 2, 3]);
    let control = TrainControl {
        should_stop: &|| true,
        on_progress: &|_| {},
    };
    for formulation in [Formulation::Fused, Formulation::Ops] {
        let outcomes =
            train_and_evaluate_many_with(&params, &Device::Cpu, "cpu", &control, formulation);
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Err(TrainError::Interrupted))));
    }

    let diverging = seeds(
        &TrainParams {
            learning_rate: 1e30,
            use_sigmoid: false,
            activation: Activation::ReLU,
            ..small_params()
        },
        &[1, 2],
    );
    let alone: Vec<_> = diverging
        .iter()
        .map(|p| train_and_evaluate(p, &Device::Cpu, "cpu", &TrainControl::unattended()))
        .collect();
    let fused =
        train_and_evaluate_many(&diverging, &Device::Cpu, "cpu", &TrainControl::unattended());
    for (fused, alone) in fused.iter().zip(&alone) {
        match (fused, alone) {
            (
                Err(TrainError::Diverged { batch: a, .. }),
                Err(TrainError::Diverged { batch: b, .. }),
            ) => {
                assert_eq!(a, b)
            }
            (a, b) => panic!(
                "expected both to diverge: {:?} / {:?}",
                a.as_ref().map(|o| &o.metrics),
                b.as_ref().map(|o| &o.metrics)
            ),
        }
    }
}
