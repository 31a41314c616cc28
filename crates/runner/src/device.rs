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

#[cfg(test)]
mod tests {
    use super::*;

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
