use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of one run. Each has its own ChaCha8 stream for the same
/// seed, so e.g. changing the number of training batches never changes the evaluation boards
/// or the initial weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngStream {
    InitWeights,
    TrainData,
    Dropout,
    Eval,
    /// Free for tools (walk directions and the like).
    Aux,
    /// The boards a loss walk scores every point on.
    WalkBoards,
}

impl RngStream {
    fn id(self) -> u64 {
        match self {
            RngStream::InitWeights => 1,
            RngStream::TrainData => 2,
            RngStream::Dropout => 3,
            RngStream::Eval => 4,
            RngStream::Aux => 5,
            RngStream::WalkBoards => 6,
        }
    }
}

/// The RNG of one stream of a run seeded by `seed`.
pub fn stream_rng(seed: u64, stream: RngStream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.id());
    rng
}
