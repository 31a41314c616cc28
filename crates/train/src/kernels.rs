//! The vector kernels of the native CPU path ([`crate::native`]): small dense matrix products
//! over tiles of cells, written once over a 16-lane vector type ([`Simd`]) and compiled for
//! AVX-512 (chosen at run time when the CPU has it) and for any CPU ([`Portable`]).
//!
//! Every matrix here is row-major with a row stride, and every row length (a tile's cells) is
//! a multiple of [`LANES`]. Two products cover the whole network:
//!
//! - [`matmul`]: `Y[r, t] = sum_k A[r, k] X[k, t]` for a small `A` (at most a few dozen rows
//!   and columns) and long rows `X`, register-blocked as 6 rows by 4 vectors of 16 cells, with
//!   an [`Epilogue`] applied to each result vector before it is stored (bias and activation in
//!   the forward pass, activation derivative and bias-gradient sums in the backward pass).
//! - [`matmul_nt_lanes`]: `L[r, k, :] += sum_t G[r, t] X[k, t]` kept as 16 partial sums per
//!   entry (one per lane): the weight gradients, accumulated tile after tile and reduced to one
//!   number per weight once per batch. Summing lane-wise in a fixed order keeps every run
//!   bit-identical on the same machine.
//!
//! The kernels take raw pointers internally; the public functions check every bound first.

/// Cells per vector.
pub const LANES: usize = 16;

/// Vectors of a chunk of columns: 128 cells, so that the chunk's rows of the operands (up to
/// 60 of them at m_factor 20, 30 KB) stay in the L1 cache.
const CHUNK_VECTORS: usize = 1 << 20;

/// The size of block `index` of `total` rows cut into `blocks` blocks as equal as can be
/// (20 rows in 4 blocks of 5, not 6 + 6 + 6 + 2).
#[inline(always)]
fn balanced(total: usize, blocks: usize, index: usize) -> usize {
    total / blocks + usize::from(index < total % blocks)
}

/// The largest block size at most `left` of the sizes compiled (`full` and the powers of
/// two below it): keeps the number of compiled block shapes small.
#[inline(always)]
fn block_size(left: usize, full: usize) -> usize {
    if left >= full {
        full
    } else if left >= 4 {
        4
    } else if left >= 2 {
        2
    } else {
        1
    }
}

/// Rows and vectors of the register block of [`matmul`].
const NN_ROWS: usize = 6;
const NN_VECTORS: usize = 4;
/// Rows of `G` and of `X` of the register block of [`matmul_nt_lanes`].
const NT_ROWS: usize = 4;
const NT_COLS: usize = 6;

/// A 16-lane f32 vector instruction set. A value of an implementation that uses CPU features
/// exists only on a CPU that has them (see [`Kernels::detect`]), so its arithmetic is safe;
/// loads and stores are unsafe because they take raw pointers to 16 valid floats.
pub trait Simd: Copy {
    type V: Copy;
    fn zero(self) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    /// # Safety
    /// `p` points to 16 readable floats.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// # Safety
    /// `p` points to 16 writable floats.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Lane `i` from `p + i` where bit `i` of `mask` is set, else 0; memory of the other
    /// lanes is not read.
    ///
    /// # Safety
    /// `p + i` is readable for every set bit `i`.
    unsafe fn load_masked(self, p: *const f32, mask: u16) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the instruction set has it).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Per lane `c > 0 ? a : b` (NaN in `c` picks `b`).
    fn select_pos(self, c: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// Per lane `c < 0 ? a : b` (NaN in `c` picks `b`).
    fn select_neg(self, c: Self::V, a: Self::V, b: Self::V) -> Self::V;

    /// [`matmul`] for this instruction set: one compiled function per source and epilogue
    /// type (implementations with CPU features override it to compile it with them).
    #[allow(clippy::too_many_arguments)]
    fn matmul<X: Rows<Self>, E: Epilogue<Self>>(
        self,
        a: &[f32],
        rows: usize,
        k_len: usize,
        x: &X,
        y: &mut [f32],
        ldy: usize,
        cols: usize,
        epilogue: &mut E,
    ) {
        matmul_impl(self, a, rows, k_len, x, y, ldy, cols, epilogue)
    }

    /// [`matmul_nt_lanes`] for this instruction set (see [`Simd::matmul`]).
    #[allow(clippy::too_many_arguments)]
    fn matmul_nt_lanes<X: Rows<Self>>(
        self,
        g: &[f32],
        rows: usize,
        ldg: usize,
        x: &X,
        k_len: usize,
        cols: usize,
        lanes: &mut [f32],
        lane_stride: usize,
    ) {
        matmul_nt_impl(self, g, rows, ldg, x, k_len, cols, lanes, lane_stride)
    }
}

/// Plain Rust on `[f32; 16]`: any CPU, vectorised as far as the compiler manages.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl Simd for Portable {
    type V = [f32; LANES];

    #[inline(always)]
    fn zero(self) -> Self::V {
        [0.0; LANES]
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        [x; LANES]
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Self::V {
        std::ptr::read_unaligned(p.cast::<[f32; LANES]>())
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: Self::V) {
        std::ptr::write_unaligned(p.cast::<[f32; LANES]>(), v)
    }
    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, mask: u16) -> Self::V {
        std::array::from_fn(|i| if mask & (1 << i) != 0 { *p.add(i) } else { 0.0 })
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn select_pos(self, c: Self::V, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| if c[i] > 0.0 { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn select_neg(self, c: Self::V, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| if c[i] < 0.0 { a[i] } else { b[i] })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{matmul_impl, matmul_nt_impl, Epilogue, Rows, Simd};

    /// AVX-512F: one `zmm` register per vector, fused multiply-add. Only constructed by
    /// [`super::Kernels::detect`] after checking the CPU.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512(());

    impl Avx512 {
        /// # Safety
        /// The CPU must support AVX-512F.
        pub unsafe fn new_unchecked() -> Avx512 {
            Avx512(())
        }
    }

    impl Simd for Avx512 {
        type V = __m512;

        #[inline(always)]
        fn zero(self) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_masked(self, p: *const f32, mask: u16) -> __m512 {
            _mm512_maskz_loadu_ps(mask, p)
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn select_pos(self, c: __m512, a: __m512, b: __m512) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe {
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c, _mm512_setzero_ps());
                _mm512_mask_blend_ps(positive, b, a)
            }
        }
        fn matmul<X: Rows<Self>, E: Epilogue<Self>>(
            self,
            a: &[f32],
            rows: usize,
            k_len: usize,
            x: &X,
            y: &mut [f32],
            ldy: usize,
            cols: usize,
            epilogue: &mut E,
        ) {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { matmul_avx512(self, a, rows, k_len, x, y, ldy, cols, epilogue) }
        }

        fn matmul_nt_lanes<X: Rows<Self>>(
            self,
            g: &[f32],
            rows: usize,
            ldg: usize,
            x: &X,
            k_len: usize,
            cols: usize,
            lanes: &mut [f32],
            lane_stride: usize,
        ) {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe { matmul_nt_avx512(self, g, rows, ldg, x, k_len, cols, lanes, lane_stride) }
        }

        #[inline(always)]
        fn select_neg(self, c: __m512, a: __m512, b: __m512) -> __m512 {
            // SAFETY: an `Avx512` exists only on a CPU with AVX-512F.
            unsafe {
                let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(c, _mm512_setzero_ps());
                _mm512_mask_blend_ps(negative, b, a)
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul_avx512<X: Rows<Avx512>, E: Epilogue<Avx512>>(
        s: Avx512,
        a: &[f32],
        rows: usize,
        k_len: usize,
        x: &X,
        y: &mut [f32],
        ldy: usize,
        cols: usize,
        epilogue: &mut E,
    ) {
        matmul_impl(s, a, rows, k_len, x, y, ldy, cols, epilogue)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul_nt_avx512<X: Rows<Avx512>>(
        s: Avx512,
        g: &[f32],
        rows: usize,
        ldg: usize,
        x: &X,
        k_len: usize,
        cols: usize,
        lanes: &mut [f32],
        lane_stride: usize,
    ) {
        matmul_nt_impl(s, g, rows, ldg, x, k_len, cols, lanes, lane_stride)
    }
}

/// Which instruction set the kernels run on: picked once per run ([`Kernels::detect`]); every
/// batch of a run uses the same, so a run is bit-identical on the same machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// AVX-512F (x86-64 CPUs that have it).
    Avx512,
    /// Plain Rust, any CPU.
    Portable,
}

impl Kernels {
    /// The fastest set this CPU runs.
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernels::Avx512;
        }
        Kernels::Portable
    }

    /// Runs `f` with the vector type of this set, compiled for its CPU features (the portable
    /// set where this CPU lacks them).
    #[inline(always)]
    pub fn run<R>(self, f: impl WithSimd<Output = R>) -> R {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU has AVX-512F (checked just above; the check is cached).
                unsafe { run_avx512(f) }
            }
            _ => f.with(Portable),
        }
    }

    /// Whether this CPU can run the set.
    pub fn available(self) -> bool {
        match self {
            Kernels::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx512 => false,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<R>(f: impl WithSimd<Output = R>) -> R {
    f.with(avx512::Avx512::new_unchecked())
}

/// A computation generic over the vector type: [`Kernels::run`] compiles its `with` for each
/// instruction set (the `#[inline(always)]` chain puts it inside the function that enables the
/// CPU features).
pub trait WithSimd {
    type Output;
    fn with<S: Simd>(self, s: S) -> Self::Output;
}

/// What happens to each result vector of [`matmul`] before it is stored: `row` is the row of
/// `Y`, `col` the first cell of the vector.
pub trait Epilogue<S: Simd> {
    /// Whether [`Epilogue::row_sum`] wants the sum of each row's results.
    const ROW_SUMS: bool = false;

    /// # Safety
    /// `row` and `col..col + 16` lie inside the matrices the epilogue was built for.
    unsafe fn apply(&mut self, s: S, row: usize, col: usize, v: S::V) -> S::V;

    /// Takes the lane-wise sum of results of row `row` (some of its vectors; called as many
    /// times as it takes to cover the row).
    ///
    /// # Safety
    /// `row` lies inside the matrices the epilogue was built for.
    #[inline(always)]
    unsafe fn row_sum(&mut self, _s: S, _row: usize, _sum: S::V) {}
}

/// Stores the product as it is.
pub struct Plain;

impl<S: Simd> Epilogue<S> for Plain {
    #[inline(always)]
    unsafe fn apply(&mut self, _s: S, _row: usize, _col: usize, v: S::V) -> S::V {
        v
    }
}

/// The activations with a vector form; the others run as a separate pass
/// ([`crate::native`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SimpleAct {
    Identity,
    Relu,
    Leaky(f32),
}

/// Forward: `act(v + bias[row])`. NaN stays NaN.
pub struct BiasAct<'a> {
    pub bias: &'a [f32],
    pub act: SimpleAct,
}

impl<S: Simd> Epilogue<S> for BiasAct<'_> {
    #[inline(always)]
    unsafe fn apply(&mut self, s: S, row: usize, _col: usize, v: S::V) -> S::V {
        let u = s.add(v, s.splat(*self.bias.get_unchecked(row)));
        match self.act {
            SimpleAct::Identity => u,
            SimpleAct::Relu => s.select_neg(u, s.zero(), u),
            SimpleAct::Leaky(slope) => s.select_neg(u, s.mul(u, s.splat(slope)), u),
        }
    }
}

/// Backward: `v * act'(pre)` with the derivative read off the layer's output `out` (same
/// layout as `Y`; `out > 0` iff `pre > 0`), PyTorch's conventions at 0 (ReLU 0, LeakyReLU the
/// slope); adds the results to the lane sums of their row (the bias gradient).
pub struct ActGrad<'a> {
    pub out: *const f32,
    pub out_stride: usize,
    pub act: SimpleAct,
    /// `[rows][LANES]`
    pub sums: &'a mut [f32],
}

impl<S: Simd> Epilogue<S> for ActGrad<'_> {
    const ROW_SUMS: bool = true;

    #[inline(always)]
    unsafe fn apply(&mut self, s: S, row: usize, col: usize, v: S::V) -> S::V {
        match self.act {
            SimpleAct::Identity => v,
            SimpleAct::Relu => {
                let out = s.load(self.out.add(row * self.out_stride + col));
                s.select_pos(out, v, s.zero())
            }
            SimpleAct::Leaky(slope) => {
                let out = s.load(self.out.add(row * self.out_stride + col));
                s.select_pos(out, v, s.mul(v, s.splat(slope)))
            }
        }
    }

    #[inline(always)]
    unsafe fn row_sum(&mut self, s: S, row: usize, sum: S::V) {
        let p = self.sums.as_mut_ptr().add(row * LANES);
        s.store(p, s.add(s.load(p), sum));
    }
}

/// The right-hand side of a product: `rows` rows of `cols` cells, read a vector at a time.
pub trait Rows<S: Simd> {
    /// Whether the source holds at least `rows` rows of `cols` cells.
    fn covers(&self, rows: usize, cols: usize) -> bool;
    /// Vector `v` (cells `16 v..16 v + 16`) of row `k`.
    ///
    /// # Safety
    /// `k` and `v` lie inside what [`Rows::covers`] was checked for.
    unsafe fn load(&self, s: S, k: usize, v: usize) -> S::V;
}

/// Row-major rows with a stride.
pub struct Dense<'a> {
    pub values: &'a [f32],
    pub ld: usize,
}

impl<S: Simd> Rows<S> for Dense<'_> {
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || (cols <= self.ld && self.values.len() >= (rows - 1) * self.ld + cols)
    }

    #[inline(always)]
    unsafe fn load(&self, s: S, k: usize, v: usize) -> S::V {
        s.load(self.values.as_ptr().add(k * self.ld + v * LANES))
    }
}

/// The nine taps of a 3x3 convolution with zero padding, read straight from its one-channel
/// input: row `k` is the input shifted by `offsets[k]` cells, zero where bit `v * 16 + i` of
/// `bits[k]` (cell `16 v + i`) is clear. No copy is made (the "im2col" matrix is never
/// written).
pub struct TapRows<'a> {
    /// The input tile with `margin` cells before its first cell and after its last.
    pub x: &'a [f32],
    pub margin: usize,
    pub offsets: &'a [isize; 9],
    /// `[9, vectors]` masks.
    pub bits: &'a [u16],
    pub vectors: usize,
}

impl<S: Simd> Rows<S> for TapRows<'_> {
    fn covers(&self, rows: usize, cols: usize) -> bool {
        let reach = self
            .offsets
            .iter()
            .map(|o| o.unsigned_abs())
            .max()
            .unwrap_or(0);
        rows <= 9
            && cols <= self.vectors * LANES
            && self.bits.len() >= 9 * self.vectors
            && reach <= self.margin
            && self.x.len() >= 2 * self.margin + self.vectors * LANES
    }

    #[inline(always)]
    unsafe fn load(&self, s: S, k: usize, v: usize) -> S::V {
        let first = self.x.as_ptr().add(self.margin);
        let p = first.offset(*self.offsets.get_unchecked(k)).add(v * LANES);
        s.load_masked(p, *self.bits.get_unchecked(k * self.vectors + v))
    }
}

/// `y[r * ldy + t] = epilogue(sum_k a[r * k_len + k] * x[k, t])` for `r < rows`, `t < cols`
/// (a multiple of [`LANES`]).
///
/// # Panics
/// When a slice is too short for the shapes or `cols` is not a multiple of [`LANES`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn matmul<S: Simd, X: Rows<S>, E: Epilogue<S>>(
    s: S,
    a: &[f32],
    rows: usize,
    k_len: usize,
    x: &X,
    y: &mut [f32],
    ldy: usize,
    cols: usize,
    epilogue: &mut E,
) {
    s.matmul(a, rows, k_len, x, y, ldy, cols, epilogue)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn matmul_impl<S: Simd, X: Rows<S>, E: Epilogue<S>>(
    s: S,
    a: &[f32],
    rows: usize,
    k_len: usize,
    x: &X,
    y: &mut [f32],
    ldy: usize,
    cols: usize,
    epilogue: &mut E,
) {
    assert!(
        cols.is_multiple_of(LANES),
        "matmul: {cols} cells is not a multiple of {LANES}"
    );
    assert!(a.len() >= rows * k_len, "matmul: a too short");
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(x.covers(k_len, cols), "matmul: x too short");
    assert!(
        cols <= ldy && y.len() >= (rows - 1) * ldy + cols,
        "matmul: y too short"
    );
    let vectors = cols / LANES;
    let row_blocks = rows.div_ceil(NN_ROWS);
    // a chunk of columns at a time, so that its rows of `x` stay in the L1 cache while every
    // block of rows reads them
    for c0 in (0..vectors).step_by(CHUNK_VECTORS) {
        let chunk_end = (c0 + CHUNK_VECTORS).min(vectors);
        let mut r0 = 0;
        for block in 0..row_blocks {
            let rb = balanced(rows, row_blocks, block);
            let mut v0 = c0;
            while v0 < chunk_end {
                let vb = block_size(chunk_end - v0, NN_VECTORS);
                // SAFETY: rows r0..r0 + rb <= rows and vectors v0..v0 + vb <= cols / LANES,
                // inside the bounds checked above.
                unsafe {
                    let args = NnArgs {
                        a: a.as_ptr().add(r0 * k_len),
                        k_len,
                        v0,
                        y: y.as_mut_ptr().add(r0 * ldy + v0 * LANES),
                        ldy,
                        row: r0,
                    };
                    nn_dispatch(s, rb, vb, &args, x, epilogue);
                }
                v0 += vb;
            }
            r0 += rb;
        }
    }
}

struct NnArgs {
    a: *const f32,
    k_len: usize,
    v0: usize,
    y: *mut f32,
    ldy: usize,
    row: usize,
}

#[inline(always)]
unsafe fn nn_dispatch<S: Simd, X: Rows<S>, E: Epilogue<S>>(
    s: S,
    rb: usize,
    vb: usize,
    args: &NnArgs,
    x: &X,
    e: &mut E,
) {
    macro_rules! block {
        ($($r:literal)*) => {
            match (rb, vb) {
                $(
                    ($r, 4) => nn_block::<S, X, E, $r, 4>(s, args, x, e),
                    ($r, 2) => nn_block::<S, X, E, $r, 2>(s, args, x, e),
                    ($r, 1) => nn_block::<S, X, E, $r, 1>(s, args, x, e),
                )*
                _ => unreachable!("matmul block {rb}x{vb}"),
            }
        };
    }
    block!(1 2 3 4 5 6);
}

#[inline(always)]
unsafe fn nn_block<S: Simd, X: Rows<S>, E: Epilogue<S>, const R: usize, const V: usize>(
    s: S,
    args: &NnArgs,
    x: &X,
    e: &mut E,
) {
    let mut acc = [[s.zero(); V]; R];
    for k in 0..args.k_len {
        let xs: [S::V; V] = std::array::from_fn(|j| x.load(s, k, args.v0 + j));
        for (i, acc) in acc.iter_mut().enumerate() {
            let w = s.splat(*args.a.add(i * args.k_len + k));
            for (acc, &x) in acc.iter_mut().zip(&xs) {
                *acc = s.fma(w, x, *acc);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        let mut sum = s.zero();
        for (j, &v) in acc.iter().enumerate() {
            let col = (args.v0 + j) * LANES;
            let out = e.apply(s, args.row + i, col, v);
            if E::ROW_SUMS {
                sum = s.add(sum, out);
            }
            s.store(args.y.add(i * args.ldy + j * LANES), out);
        }
        if E::ROW_SUMS {
            e.row_sum(s, args.row + i, sum);
        }
    }
}

/// `lanes[(r * lane_stride + k) * LANES + l] += sum_v g[r * ldg + v * LANES + l] * x[k, v *
/// LANES + l]` for `r < rows`, `k < k_len`, lane `l` and vectors `v < cols / LANES`.
///
/// # Panics
/// When a slice is too short for the shapes or `cols` is not a multiple of [`LANES`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn matmul_nt_lanes<S: Simd, X: Rows<S>>(
    s: S,
    g: &[f32],
    rows: usize,
    ldg: usize,
    x: &X,
    k_len: usize,
    cols: usize,
    lanes: &mut [f32],
    lane_stride: usize,
) {
    s.matmul_nt_lanes(g, rows, ldg, x, k_len, cols, lanes, lane_stride)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn matmul_nt_impl<S: Simd, X: Rows<S>>(
    s: S,
    g: &[f32],
    rows: usize,
    ldg: usize,
    x: &X,
    k_len: usize,
    cols: usize,
    lanes: &mut [f32],
    lane_stride: usize,
) {
    assert!(
        cols.is_multiple_of(LANES),
        "matmul_nt: {cols} cells is not a multiple of {LANES}"
    );
    if rows == 0 || k_len == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= ldg && g.len() >= (rows - 1) * ldg + cols,
        "matmul_nt: g too short"
    );
    assert!(x.covers(k_len, cols), "matmul_nt: x too short");
    assert!(k_len <= lane_stride, "matmul_nt: lane stride");
    assert!(
        lanes.len() >= ((rows - 1) * lane_stride + k_len) * LANES,
        "matmul_nt: lanes too short"
    );
    let vectors = cols / LANES;
    let (row_blocks, k_blocks) = (rows.div_ceil(NT_ROWS), k_len.div_ceil(NT_COLS));
    // a chunk of columns at a time, so that its rows of `g` and `x` stay in the L1 cache
    for c0 in (0..vectors).step_by(CHUNK_VECTORS) {
        let chunk_end = (c0 + CHUNK_VECTORS).min(vectors);
        let mut r0 = 0;
        for r_block in 0..row_blocks {
            let rb = balanced(rows, row_blocks, r_block);
            let mut k0 = 0;
            for k_block in 0..k_blocks {
                let kb = balanced(k_len, k_blocks, k_block);
                // SAFETY: rows r0..r0 + rb <= rows, columns k0..k0 + kb <= k_len, vectors
                // c0..chunk_end <= cols / LANES, inside the bounds checked above.
                unsafe {
                    let args = NtArgs {
                        g: g.as_ptr().add(r0 * ldg),
                        ldg,
                        k0,
                        v0: c0,
                        v1: chunk_end,
                        lanes: lanes.as_mut_ptr().add((r0 * lane_stride + k0) * LANES),
                        lane_stride,
                    };
                    nt_dispatch(s, rb, kb, &args, x);
                }
                k0 += kb;
            }
            r0 += rb;
        }
    }
}

struct NtArgs {
    g: *const f32,
    ldg: usize,
    k0: usize,
    /// The vectors `v0..v1` of every row.
    v0: usize,
    v1: usize,
    lanes: *mut f32,
    lane_stride: usize,
}

#[inline(always)]
unsafe fn nt_dispatch<S: Simd, X: Rows<S>>(s: S, rb: usize, kb: usize, args: &NtArgs, x: &X) {
    macro_rules! block {
        ($($r:literal)*) => {
            match (rb, kb) {
                $(
                    ($r, 6) => nt_block::<S, X, $r, 6>(s, args, x),
                    ($r, 5) => nt_block::<S, X, $r, 5>(s, args, x),
                    ($r, 4) => nt_block::<S, X, $r, 4>(s, args, x),
                    ($r, 3) => nt_block::<S, X, $r, 3>(s, args, x),
                    ($r, 2) => nt_block::<S, X, $r, 2>(s, args, x),
                    ($r, 1) => nt_block::<S, X, $r, 1>(s, args, x),
                )*
                _ => unreachable!("matmul_nt block {rb}x{kb}"),
            }
        };
    }
    block!(1 2 3 4);
}

#[inline(always)]
unsafe fn nt_block<S: Simd, X: Rows<S>, const R: usize, const K: usize>(
    s: S,
    args: &NtArgs,
    x: &X,
) {
    let lane = |i: usize, k: usize| args.lanes.add((i * args.lane_stride + k) * LANES);
    let mut acc: [[S::V; K]; R] =
        std::array::from_fn(|i| std::array::from_fn(|k| s.load(lane(i, k))));
    for v in args.v0..args.v1 {
        let gs: [S::V; R] = std::array::from_fn(|i| s.load(args.g.add(i * args.ldg + v * LANES)));
        for k in 0..K {
            let x = x.load(s, args.k0 + k, v);
            for (acc, &g) in acc.iter_mut().zip(&gs) {
                acc[k] = s.fma(g, x, acc[k]);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (k, &v) in acc.iter().enumerate() {
            s.store(lane(i, k), v);
        }
    }
}

/// The sum of the 16 lanes of each entry, in a fixed order: `out[i] = sum_l lanes[i * 16 +
/// l]`; leaves `lanes` zero for the next accumulation.
pub fn reduce_lanes(lanes: &mut [f32], out: &mut [f32]) {
    for (out, lanes) in out.iter_mut().zip(lanes.chunks_exact_mut(LANES)) {
        // pairwise, as a vector reduction would
        let mut v: [f32; LANES] = (&*lanes).try_into().unwrap_or([0.0; LANES]);
        lanes.fill(0.0);
        let mut width = LANES / 2;
        while width > 0 {
            for i in 0..width {
                v[i] += v[i + width];
            }
            width /= 2;
        }
        *out = v[0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    struct Check {
        rows: usize,
        k_len: usize,
        cols: usize,
    }

    impl WithSimd for &Check {
        type Output = (Vec<f32>, Vec<f32>);
        fn with<S: Simd>(self, s: S) -> Self::Output {
            let (rows, k_len, cols) = (self.rows, self.k_len, self.cols);
            let ldx = cols + LANES;
            let a = values(rows * k_len, 1);
            let x = values(k_len * ldx, 2);
            let bias = values(rows, 3);
            let mut y = vec![0f32; rows * cols];
            let mut epilogue = BiasAct {
                bias: &bias,
                act: SimpleAct::Leaky(0.5),
            };
            let xs = Dense {
                values: &x,
                ld: ldx,
            };
            matmul(s, &a, rows, k_len, &xs, &mut y, cols, cols, &mut epilogue);
            let mut expected = vec![0f32; rows * cols];
            for r in 0..rows {
                for t in 0..cols {
                    let mut v = bias[r] as f64;
                    for k in 0..k_len {
                        v += a[r * k_len + k] as f64 * x[k * ldx + t] as f64;
                    }
                    expected[r * cols + t] = if v > 0.0 { v } else { 0.5 * v } as f32;
                }
            }
            let mut lanes = vec![0f32; rows * (k_len + 1) * LANES];
            let g = values(rows * cols, 4);
            matmul_nt_lanes(s, &g, rows, cols, &xs, k_len, cols, &mut lanes, k_len + 1);
            let mut sums = vec![0f32; rows * (k_len + 1)];
            reduce_lanes(&mut lanes, &mut sums);
            for r in 0..rows {
                for k in 0..k_len {
                    let want: f64 = (0..cols)
                        .map(|t| g[r * cols + t] as f64 * x[k * ldx + t] as f64)
                        .sum();
                    let got = sums[r * (k_len + 1) + k] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * cols as f64,
                        "nt {r} {k}: {got} vs {want}"
                    );
                }
                assert_eq!(sums[r * (k_len + 1) + k_len], 0.0);
            }
            (y, expected)
        }
    }

    #[test]
    fn products_match_a_plain_loop_for_every_block_edge() {
        for kernels in [Kernels::Portable, Kernels::Avx512] {
            if !kernels.available() {
                eprintln!("skipping {kernels:?}: not available on this cpu");
                continue;
            }
            for rows in [1, 2, 5, 6, 7, 13, 40] {
                for k_len in [1, 2, 9, 20] {
                    for cols in [16, 48, 64, 80, 112] {
                        let (y, expected) = kernels.run(&Check { rows, k_len, cols });
                        for (got, want) in y.iter().zip(&expected) {
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * k_len as f32,
                                "{kernels:?} {rows}x{k_len}x{cols}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
