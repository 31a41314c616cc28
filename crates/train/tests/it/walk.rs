//! Loss walks: flat from the solution to itself, ending at the solution's loss from a perturbed
//! start, deterministic, and alignment undoing a relabelling of hidden channels.

use candle_core::{Device, Tensor};
use lifesweep_life::{stream_rng, RngStream};
use lifesweep_train::walk::{default_random_distances, walk, WalkOptions, WalkTarget};
use lifesweep_train::{presolved_network, train_and_evaluate, TrainControl, TrainParams};
use rand::Rng;

use crate::small_params;

fn presolved_weights(params: &TrainParams) -> Vec<(String, Tensor)> {
    presolved_network(params, &Device::Cpu)
        .unwrap()
        .weights()
        .unwrap()
}

fn to_presolve(points: u32, align: bool) -> WalkOptions {
    WalkOptions {
        target: WalkTarget::Presolve { points },
        batches: 4,
        align,
    }
}

/// Each weight plus noise U(-scale, scale) from a seeded RNG.
fn perturbed(weights: &[(String, Tensor)], scale: f32, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = stream_rng(seed, RngStream::Aux);
    weights
        .iter()
        .map(|(name, t)| {
            let values: Vec<f32> = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(|v| v + rng.random_range(-scale..scale))
                .collect();
            let noisy = Tensor::from_vec(values, t.shape(), &Device::Cpu).unwrap();
            (name.clone(), noisy)
        })
        .collect()
}

#[test]
fn a_walk_from_the_solution_to_itself_is_flat_at_the_minimum() {
    let params = small_params();
    let solution = presolved_weights(&params);
    let walked = walk(&params, &solution, &to_presolve(7, false)).unwrap();
    assert_eq!(walked.points.len(), 7);
    assert_eq!(walked.distance_to_solution, (0.0, 0.0));
    let first = walked.points[0].loss;
    // a presolved sigmoid network is confident: its loss is tiny (a random one's is ~0.6)
    assert!(first < 0.01, "loss at the solution {first}");
    for point in &walked.points {
        assert_eq!(point.loss, first, "point {}", point.index);
        assert_eq!(point.success_rate, 1.0);
        assert_eq!(point.distance, 0.0);
    }
}

#[test]
fn a_walk_from_a_perturbed_solution_ends_at_the_solution_loss() {
    let params = small_params();
    let solution = presolved_weights(&params);
    let at_solution = walk(&params, &solution, &to_presolve(2, false))
        .unwrap()
        .points[0]
        .loss;
    let start = perturbed(&solution, 0.8, 11);
    let walked = walk(&params, &start, &to_presolve(11, false)).unwrap();
    let (first, last) = (&walked.points[0], walked.points.last().unwrap());
    assert_eq!(first.fraction, Some(0.0));
    assert_eq!(last.fraction, Some(1.0));
    assert!(
        (last.loss - at_solution).abs() <= 1e-6 * at_solution.max(1e-6),
        "{} vs {at_solution}",
        last.loss
    );
    assert!(
        first.loss > 10.0 * last.loss,
        "{} vs {}",
        first.loss,
        last.loss
    );
    assert_eq!(last.success_rate, 1.0);
    let total = walked.distance_to_solution.1;
    assert!(total > 0.0);
    assert!((last.distance - total).abs() < 1e-9 * total);
    // evenly spaced
    for pair in walked.points.windows(2) {
        assert!((pair[1].distance - pair[0].distance - total / 10.0).abs() < 1e-9 * total);
    }
}

#[test]
fn walks_are_deterministic_and_random_walks_follow_their_seed() {
    let params = small_params();
    let start = perturbed(&presolved_weights(&params), 0.3, 5);
    let random = |seed: u64| WalkOptions {
        target: WalkTarget::Random {
            seed,
            distances: default_random_distances(5),
        },
        batches: 3,
        align: false,
    };
    let a = walk(&params, &start, &random(1)).unwrap();
    assert_eq!(a, walk(&params, &start, &random(1)).unwrap());
    let b = walk(&params, &start, &random(2)).unwrap();
    assert_eq!(a.points.len(), 15);
    // the same start and boards, then different directions
    assert_eq!(a.points[0].loss, b.points[0].loss);
    assert_ne!(a.points.last().unwrap().loss, b.points.last().unwrap().loss);
    let distances: Vec<f64> = a.points.iter().map(|p| p.distance).collect();
    assert_eq!(distances, default_random_distances(5));
    // a random walk starts where a presolve walk of the same run starts (same boards)
    let presolve = WalkOptions {
        batches: 3,
        ..to_presolve(3, false)
    };
    let p = walk(&params, &start, &presolve).unwrap();
    assert_eq!(p, walk(&params, &start, &presolve).unwrap());
    assert_eq!(p.points[0].loss, a.points[0].loss);
}

/// Relabels the hidden channels of a presolved network: conv3 channels reversed (and the
/// matching conv1a columns), conv1a channels rotated by one (and the conv1b inputs).
fn relabelled(weights: &[(String, Tensor)], m: usize) -> Vec<(String, Tensor)> {
    let p: Vec<u32> = (0..2 * m as u32).rev().collect();
    let q: Vec<u32> = (0..m as u32).map(|j| (j + 1) % m as u32).collect();
    let index = |v: &[u32]| Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap();
    let (p, q) = (index(&p), index(&q));
    weights
        .iter()
        .map(|(name, t)| {
            let t = if name.ends_with("conv3.weight") || name.ends_with("conv3.bias") {
                t.index_select(&p, 0).unwrap()
            } else if name.ends_with("conv1a.weight") {
                t.index_select(&q, 0).unwrap().index_select(&p, 1).unwrap()
            } else if name.ends_with("conv1a.bias") {
                t.index_select(&q, 0).unwrap()
            } else if name.ends_with("conv1b.weight") {
                t.index_select(&q, 1).unwrap()
            } else {
                t.clone()
            };
            (name.clone(), t)
        })
        .collect()
}

#[test]
fn alignment_undoes_a_relabelling_of_hidden_channels() {
    let params = TrainParams {
        m_factor: 3,
        steps: 2,
        ..small_params()
    };
    let solution = presolved_weights(&params);
    let shuffled = relabelled(&solution, 3);
    let plain = walk(&params, &shuffled, &to_presolve(5, false)).unwrap();
    let aligned = walk(&params, &shuffled, &to_presolve(5, true)).unwrap();
    // the relabelled network computes the same function...
    assert_eq!(plain.points[0].success_rate, 1.0);
    // (up to the order of float sums over channels)
    let (a, b) = (plain.points[0].loss, aligned.points[0].loss);
    assert!((a - b).abs() <= 1e-5 * a, "{a} vs {b}");
    // ...far from the solution's labelling; aligned, it is the solution
    assert!(plain.distance_to_solution.0 > 1.0);
    assert_eq!(aligned.distance_to_solution.1, 0.0);
    assert!(aligned.aligned);
    // so the unaligned line crosses worse networks, the aligned one stays at the minimum
    let worst = |w: &lifesweep_train::Walk| {
        w.points
            .iter()
            .map(|p| p.loss)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    assert!(worst(&plain) > 10.0 * worst(&aligned));
    assert!(aligned.points.iter().all(|p| p.success_rate == 1.0));
}

#[test]
fn a_trained_run_walks_to_the_solution_and_bad_options_are_refused() {
    let params = TrainParams {
        batches: 30,
        ..small_params()
    };
    let outcome =
        train_and_evaluate(&params, &Device::Cpu, "cpu", &TrainControl::unattended()).unwrap();
    let walked = walk(&params, &outcome.weights, &to_presolve(4, true)).unwrap();
    assert_eq!(walked.points.len(), 4);
    assert_eq!(
        walked.points[0].success_rate, outcome.metrics.success_rate,
        "the walk starts at the run's own evaluation"
    );
    assert!(walked.distance_to_solution.1 <= walked.distance_to_solution.0 + 1e-9);
    let err = walk(&params, &outcome.weights, &to_presolve(1, false)).unwrap_err();
    assert!(err.to_string().contains("points"), "{err}");
    let err = walk(
        &params,
        &outcome.weights,
        &WalkOptions {
            batches: 0,
            ..to_presolve(3, false)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("batches"), "{err}");
    let wider = TrainParams {
        m_factor: 3,
        ..params.clone()
    };
    let err = walk(&wider, &outcome.weights, &to_presolve(3, false)).unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
}
