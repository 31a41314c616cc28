//! Which compute device a worker trains on.

use candle_core::Device;

use crate::RunnerError;

/// A device as the user names it: `cpu` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// The label stored with each run.
    pub fn label(&self) -> String {
        match self {
            DeviceSpec::Cpu => "cpu".to_string(),
            DeviceSpec::Cuda(i) => format!("cuda:{i}"),
        }
    }

    /// Opens the device; fails at once (not at the first job) when this build has no CUDA.
    pub fn open(&self) -> Result<Device, RunnerError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(RunnerError::Device {
                        spec: self.label(),
                        message: "this lifesweep was built without CUDA; rebuild with \
                                  `cargo build --release --features cuda`"
                            .to_string(),
                    });
                }
                Device::new_cuda(*i).map_err(|e| RunnerError::Device {
                    spec: self.label(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Parses `cpu` or `cuda:N` (`cuda` alone means `cuda:0`).
pub fn parse_device(text: &str) -> Result<DeviceSpec, RunnerError> {
    let bad = |message: &str| RunnerError::Device {
        spec: text.to_string(),
        message: message.to_string(),
    };
    match text.trim() {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        other => match other.strip_prefix("cuda:") {
            Some(index) => index
                .parse()
                .map(DeviceSpec::Cuda)
                .map_err(|_| bad("expected cuda:N with N a GPU index, e.g. cuda:0")),
            None => Err(bad("expected `cpu` or `cuda:N`")),
        },
    }
}

/// Parses a comma-separated list of GPUs (`cuda:0,cuda:1`) for a scheduler that gives each
/// its own workers. Refuses an empty list or entry, `cpu`, and a GPU named twice.
pub fn parse_device_list(text: &str) -> Result<Vec<DeviceSpec>, RunnerError> {
    let bad = |message: String| RunnerError::Device {
        spec: text.to_string(),
        message,
    };
    if text.trim().is_empty() {
        return Err(bad(
            "expected a comma-separated list of GPUs, e.g. cuda:0,cuda:1 (got nothing)".to_string(),
        ));
    }
    let mut devices: Vec<DeviceSpec> = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(bad(
                "expected a comma-separated list of GPUs, e.g. cuda:0,cuda:1 (found an empty entry)"
                    .to_string(),
            ));
        }
        let device = parse_device(entry)?;
        if device == DeviceSpec::Cpu {
            return Err(bad(
                "lists GPUs only (cuda:N); for CPU workers use --device cpu --workers N"
                    .to_string(),
            ));
        }
        if devices.contains(&device) {
            return Err(bad(format!(
                "{} is listed twice; name each GPU once and set --workers-per-device for more \
                 workers on it",
                device.label()
            )));
        }
        devices.push(device);
    }
    Ok(devices)
}

/// Where one worker process of a scheduler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The device as the user named it: recorded with each run (`cuda:1`).
    pub device: DeviceSpec,
    /// The device the worker opens: `cuda:0` when it sees only its GPU, else `device`.
    pub worker_device: DeviceSpec,
    /// `CUDA_VISIBLE_DEVICES` for the worker (its one GPU); `None` leaves the environment as is.
    pub visible_devices: Option<String>,
}

impl Placement {
    /// A worker on `device` with the scheduler's environment (`--device` and `--workers`).
    pub fn shared(device: DeviceSpec) -> Placement {
        Placement {
            worker_device: device.clone(),
            device,
            visible_devices: None,
        }
    }
}

/// The placements of `workers_per_device` workers on each GPU of `devices`, each worker seeing
/// only its GPU, in round-robin order (GPU 0, GPU 1, ..., GPU 0, ...) so that a sweep with
/// fewer jobs than workers spreads over the GPUs. `inherited_visible` is the scheduler's own
/// `CUDA_VISIBLE_DEVICES`: when set, `cuda:N` is its N-th entry, as it is for the scheduler.
pub fn gpu_placements(
    devices: &[DeviceSpec],
    workers_per_device: usize,
    inherited_visible: Option<&str>,
) -> Result<Vec<Placement>, RunnerError> {
    let inherited: Option<Vec<&str>> = inherited_visible.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    let mut per_device = Vec::with_capacity(devices.len());
    for device in devices {
        let DeviceSpec::Cuda(index) = device else {
            return Err(RunnerError::Device {
                spec: device.label(),
                message: "only GPUs (cuda:N) get workers of their own".to_string(),
            });
        };
        let visible = match &inherited {
            None => index.to_string(),
            Some(list) => match list.get(*index) {
                Some(entry) => (*entry).to_string(),
                None => {
                    return Err(RunnerError::Device {
                        spec: device.label(),
                        message: format!(
                            "CUDA_VISIBLE_DEVICES={} shows {} GPU(s), so there is no cuda:{index}",
                            inherited_visible.unwrap_or_default(),
                            list.len()
                        ),
                    })
                }
            },
        };
        per_device.push(Placement {
            device: device.clone(),
            worker_device: DeviceSpec::Cuda(0),
            visible_devices: Some(visible),
        });
    }
    let mut placements = Vec::with_capacity(per_device.len() * workers_per_device);
    for _ in 0..workers_per_device {
        placements.extend(per_device.iter().cloned());
    }
    Ok(placements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_name_each_gpu_once() {
        assert_eq!(
            parse_device_list("cuda:0, cuda:2").unwrap(),
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(2)]
        );
        for (text, says) in [
            ("", "got nothing"),
            ("cuda:0,,cuda:1", "empty entry"),
            ("cuda:0,", "empty entry"),
            ("cpu", "GPUs only"),
            ("cuda:0,cpu", "GPUs only"),
            ("cuda:1,cuda:1", "cuda:1 is listed twice"),
            ("cuda,cuda:0", "cuda:0 is listed twice"),
            ("cuda:0,gpu1", "expected `cpu` or `cuda:N`"),
        ] {
            let err = parse_device_list(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn each_gpu_gets_k_workers_that_see_only_it() {
        let devices = [DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)];
        let placements = gpu_placements(&devices, 2, None).unwrap();
        let seen: Vec<(String, String, Option<&str>)> = placements
            .iter()
            .map(|p| {
                (
                    p.device.label(),
                    p.worker_device.label(),
                    p.visible_devices.as_deref(),
                )
            })
            .collect();
        let want = |gpu: &str, visible: &'static str| {
            (gpu.to_string(), "cuda:0".to_string(), Some(visible))
        };
        assert_eq!(
            seen,
            vec![
                want("cuda:0", "0"),
                want("cuda:1", "1"),
                want("cuda:0", "0"),
                want("cuda:1", "1"),
            ]
        );
    }

    #[test]
    fn an_inherited_cuda_visible_devices_is_respected() {
        // The scheduler itself sees physical GPUs 2 and 3 (or GPUs named by UUID): its cuda:1 is
        // the second of them, and that is what its worker must see.
        let placements = gpu_placements(&[DeviceSpec::Cuda(1)], 1, Some("2,3")).unwrap();
        assert_eq!(placements[0].visible_devices.as_deref(), Some("3"));
        assert_eq!(placements[0].device, DeviceSpec::Cuda(1));
        let placements =
            gpu_placements(&[DeviceSpec::Cuda(0)], 1, Some("GPU-a1b2,GPU-c3d4")).unwrap();
        assert_eq!(placements[0].visible_devices.as_deref(), Some("GPU-a1b2"));
        let err = gpu_placements(&[DeviceSpec::Cuda(2)], 1, Some("2,3"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CUDA_VISIBLE_DEVICES=2,3") && err.contains("no cuda:2"),
            "{err}"
        );
    }

    #[test]
    fn parses_devices_and_rejects_others() {
        assert_eq!(parse_device("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse_device("cuda:1").unwrap(), DeviceSpec::Cuda(1));
        assert_eq!(parse_device("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("without CUDA"), "{err}");
    }
}
