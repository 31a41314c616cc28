//! Training on a CUDA device, checked against the CPU. Runs when this build has the `cuda`
//! feature and a GPU is present; otherwise it says on stderr that it skipped, and why.

use candle_core::Device;
use lifesweep_train::{train_and_evaluate, TrainControl, TrainParams};

use crate::small_params;

/// The first GPU, or why there is none (printed as the reason for skipping).
fn cuda_device() -> Result<Device, String> {
    if !candle_core::utils::cuda_is_available() {
        return Err("skipped: no CUDA device (built without the cuda feature)".to_string());
    }
    Device::new_cuda(0).map_err(|e| format!("skipped: built with cuda but no device found ({e})"))
}

/// The same job on cuda:0 and on the CPU: the same boards and initial weights (host RNGs seeded
/// by the job), so the same training up to float rounding. The CPU runs the native kernels and
/// the GPU candle's, which sum in other orders: the loss curves agree closely, not bit for bit,
/// and a cell whose output sits at the 0.5 threshold may flip, so the success rates agree to
/// within one evaluation board.
#[test]
fn a_short_training_on_cuda_matches_the_cpu() {
    let cuda = match cuda_device() {
        Ok(device) => device,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    let params = TrainParams {
        steps: 1,
        m_factor: 2,
        batches: 50,
        loss_every: 10,
        ..small_params()
    };
    let control = TrainControl::unattended();
    let on_gpu = train_and_evaluate(&params, &cuda, "cuda:0", &control)
        .expect("training on cuda:0")
        .metrics;
    let on_cpu = train_and_evaluate(&params, &Device::Cpu, "cpu", &control)
        .expect("training on the CPU")
        .metrics;

    assert_eq!(on_gpu.device, "cuda:0");
    assert_eq!(on_gpu.param_count, on_cpu.param_count);
    let batches = |m: &lifesweep_train::RunMetrics| -> Vec<u32> {
        m.loss_curve.iter().map(|p| p.batch).collect()
    };
    assert_eq!(batches(&on_gpu), vec![10, 20, 30, 40, 50]);
    assert_eq!(batches(&on_gpu), batches(&on_cpu));
    for (gpu, cpu) in on_gpu.loss_curve.iter().zip(&on_cpu.loss_curve) {
        assert!(
            gpu.loss.is_finite() && (gpu.loss - cpu.loss).abs() <= 5e-3 * cpu.loss.abs().max(1.0),
            "loss at batch {}: cuda {} vs cpu {}\ncuda {:?}\ncpu  {:?}",
            gpu.batch,
            gpu.loss,
            cpu.loss,
            on_gpu.loss_curve,
            on_cpu.loss_curve
        );
    }
    let one_board = 1.0 / f64::from(params.eval_boards);
    assert!(
        (on_gpu.success_rate - on_cpu.success_rate).abs() <= one_board + 1e-12,
        "success rate: cuda {} vs cpu {}",
        on_gpu.success_rate,
        on_cpu.success_rate
    );
    assert!(
        (on_gpu.cell_accuracy - on_cpu.cell_accuracy).abs() <= 0.005,
        "cell accuracy: cuda {} vs cpu {}",
        on_gpu.cell_accuracy,
        on_cpu.cell_accuracy
    );
}

/// Fused seeds on cuda:0 (the batched candle network with a leading model dimension, one
/// computation for the group) against each seed trained alone on the CPU: the same boards and
/// initial weights, so the same training up to float rounding.
#[test]
fn fused_seeds_on_cuda_train_like_separate_runs_on_the_cpu() {
    let cuda = match cuda_device() {
        Ok(device) => device,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    let params: Vec<TrainParams> = [3, 1, 4]
        .into_iter()
        .map(|seed| TrainParams {
            seed,
            steps: 2,
            m_factor: 2,
            batches: 40,
            loss_every: 10,
            ..small_params()
        })
        .collect();
    let control = TrainControl::unattended();
    let fused = lifesweep_train::train_and_evaluate_many(&params, &cuda, "cuda:0", &control);
    assert_eq!(fused.len(), params.len());
    for (outcome, p) in fused.into_iter().zip(&params) {
        let on_gpu = outcome
            .unwrap_or_else(|e| panic!("seed {}: fused training on cuda:0: {e}", p.seed))
            .metrics;
        let on_cpu = train_and_evaluate(p, &Device::Cpu, "cpu", &control)
            .expect("training on the CPU")
            .metrics;
        assert_eq!(on_gpu.device, "cuda:0");
        assert_eq!(on_gpu.loss_curve.len(), on_cpu.loss_curve.len());
        for (gpu, cpu) in on_gpu.loss_curve.iter().zip(&on_cpu.loss_curve) {
            assert_eq!(gpu.batch, cpu.batch);
            assert!(
                gpu.loss.is_finite()
                    && (gpu.loss - cpu.loss).abs() <= 5e-3 * cpu.loss.abs().max(1.0),
                "seed {}, loss at batch {}: fused cuda {} vs cpu {}",
                p.seed,
                gpu.batch,
                gpu.loss,
                cpu.loss
            );
        }
        let one_board = 1.0 / f64::from(p.eval_boards);
        assert!(
            (on_gpu.success_rate - on_cpu.success_rate).abs() <= one_board + 1e-12,
            "seed {}: success rate fused cuda {} vs cpu {}",
            p.seed,
            on_gpu.success_rate,
            on_cpu.success_rate
        );
    }
}
