//! The description of one (possibly strided-batched) matrix product.

/// `C = alpha * op(A) * op(B) + beta * C` for `batch` matrices, all row-major.
///
/// `op(A)` is (m, k): A is stored (m, k) with row stride `lda >= k`, or, with `trans_a`,
/// (k, m) with `lda >= m`. `op(B)` is (k, n): B stored (k, n) with `ldb >= n`, or, with
/// `trans_b`, (n, k) with `ldb >= k`. C is (m, n) with `ldc >= n`. Matrix i of the batch
/// starts at `a_off + i * stride_a` (and likewise for B and C).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub a_off: usize,
    pub lda: usize,
    pub b_off: usize,
    pub ldb: usize,
    pub c_off: usize,
    pub ldc: usize,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Gemm {
    /// A single compact product with the given transposes, alpha 1 and beta 0.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Gemm {
        Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
            alpha: 1.0,
            beta: 0.0,
            a_off: 0,
            lda: if trans_a { m } else { k },
            b_off: 0,
            ldb: if trans_b { k } else { n },
            c_off: 0,
            ldc: n,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        }
    }
    /// Sets alpha and beta.
    pub fn scaled(mut self, alpha: f32, beta: f32) -> Gemm {
        self.alpha = alpha;
        self.beta = beta;
        self
    }
    /// Sets the offsets of the first A, B and C.
    pub fn offsets(mut self, a: usize, b: usize, c: usize) -> Gemm {
        self.a_off = a;
        self.b_off = b;
        self.c_off = c;
        self
    }
    /// Sets the row strides.
    pub fn lds(mut self, lda: usize, ldb: usize, ldc: usize) -> Gemm {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }
    /// Makes it a strided batch of `count` products.
    pub fn batched(mut self, count: usize, sa: usize, sb: usize, sc: usize) -> Gemm {
        self.batch = count;
        self.stride_a = sa;
        self.stride_b = sb;
        self.stride_c = sc;
        self
    }
    /// Floating-point operations of the whole batch (2·m·n·k each).
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }
    /// Elements of (rows, cols) storage with row stride ld, or None when ld < cols.
    fn extent(rows: usize, cols: usize, ld: usize) -> Option<usize> {
        if rows == 0 || cols == 0 {
            return Some(0);
        }
        (ld >= cols).then(|| (rows - 1) * ld + cols)
    }
    /// The buffer lengths A, B and C need, checked against the buffers' lengths. Panics (a
    /// programming error, not user input) when a view does not fit: backends call it
    /// before handing pointers to BLAS, which keeps those calls memory-safe.
    pub fn checked_lens(&self, a: usize, b: usize, c: usize) -> (usize, usize, usize) {
        let lens = self.required_lens();
        assert!(
            matches!(lens, Some((na, nb, nc)) if na <= a && nb <= b && nc <= c),
            "gemm views do not fit: need (A, B, C) = {lens:?} (None: a row stride shorter than a row), have ({a}, {b}, {c}): {self:?}"
        );
        lens.unwrap_or_default()
    }

    /// The buffer lengths A, B and C need (None when a row stride is too small).
    pub fn required_lens(&self) -> Option<(usize, usize, usize)> {
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let last = self.batch.saturating_sub(1);
        let ea = Self::extent(ar, ac, self.lda)?;
        let eb = Self::extent(br, bc, self.ldb)?;
        let ec = Self::extent(self.m, self.n, self.ldc)?;
        Some((
            self.a_off + last * self.stride_a + ea,
            self.b_off + last * self.stride_b + eb,
            self.c_off + last * self.stride_c + ec,
        ))
    }
}
