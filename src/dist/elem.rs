//! Element types the collectives move: f32, bf16 and f16, their MPI datatypes, and the
//! MPI user-defined sum for the half types (add in f32, round once to the half type).
use std::os::raw::{c_int, c_void};

use half::{bf16, f16};
use mpi::ffi;

pub use crate::dtype::DType;

/// The MPI datatype elements of `d` travel as (half types as 16-bit containers).
pub(crate) fn mpi_datatype(d: DType) -> ffi::MPI_Datatype {
    match d {
        DType::Fp32 => f32::mpi_datatype(),
        DType::Bf16 => bf16::mpi_datatype(),
        DType::Fp16 => f16::mpi_datatype(),
    }
}

/// An element type the collectives accept. Implemented for `f32`, `half::bf16` and
/// `half::f16`. Half types travel as 16-bit containers and are summed by an MPI
/// user-defined operation that adds in f32 and rounds once per addition.
pub trait Elem: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    /// The dtype tag of this type.
    const DTYPE: DType;
    /// Widens to f32 (exact for all three types).
    fn to_f32(self) -> f32;
    /// Rounds an f32 to this type (round to nearest even).
    fn from_f32(x: f32) -> Self;
    /// The MPI datatype the bytes travel as: `MPI_FLOAT` for f32, `MPI_UINT16_T` for the
    /// half types (never reduced with a built-in op; see [`crate::dist::Dist`]'s sum ops).
    fn mpi_datatype() -> ffi::MPI_Datatype;
}

impl Elem for f32 {
    const DTYPE: DType = DType::Fp32;
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        x
    }
    fn mpi_datatype() -> ffi::MPI_Datatype {
        // SAFETY: reading an immutable handle exported by mpi-sys.
        unsafe { ffi::RSMPI_FLOAT }
    }
}

impl Elem for bf16 {
    const DTYPE: DType = DType::Bf16;
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn mpi_datatype() -> ffi::MPI_Datatype {
        // SAFETY: reading an immutable handle exported by mpi-sys.
        unsafe { ffi::RSMPI_UINT16_T }
    }
}

impl Elem for f16 {
    const DTYPE: DType = DType::Fp16;
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn mpi_datatype() -> ffi::MPI_Datatype {
        // SAFETY: reading an immutable handle exported by mpi-sys.
        unsafe { ffi::RSMPI_UINT16_T }
    }
}

/// The MPI_User_function for a half type: `inout[i] = round_T(f32(in[i]) + f32(inout[i]))`
/// for `i < *len`, so each addition rounds once and a sum over N ranks carries at most N-1
/// roundings. Reads `*len` elements of `T` at `invec` and
/// accumulates them into `inoutvec`. Unaligned access is used because MPI gives no
/// alignment promise for its temporary buffers.
unsafe extern "C" fn half_sum_op<T: Elem>(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    _datatype: *mut ffi::MPI_Datatype,
) {
    if invec.is_null() || inoutvec.is_null() || len.is_null() {
        return;
    }
    let n = (*len).max(0) as usize;
    let a = invec as *const T;
    let b = inoutvec as *mut T;
    for i in 0..n {
        let x = a.add(i).read_unaligned();
        let y = b.add(i).read_unaligned();
        b.add(i)
            .write_unaligned(T::from_f32(x.to_f32() + y.to_f32()));
    }
}

/// The sum operations of one MPI session: the built-in `MPI_SUM` for f32 and user-defined,
/// commutative ops for bf16 and f16. Created after `MPI_Init`, freed before finalize by the
/// `Dist` that created them; groups hold copies of the handles.
#[derive(Clone, Copy)]
pub(crate) struct SumOps {
    bf16: ffi::MPI_Op,
    f16: ffi::MPI_Op,
}

impl SumOps {
    /// Creates the user-defined half sums (`MPI_Op_create`, commutative).
    pub(crate) fn create() -> anyhow::Result<SumOps> {
        Ok(SumOps {
            bf16: create_op(half_sum_op::<bf16>, "bf16 sum")?,
            f16: create_op(half_sum_op::<f16>, "f16 sum")?,
        })
    }

    /// The MPI op that sums elements of `dtype`.
    pub(crate) fn sum(&self, dtype: DType) -> ffi::MPI_Op {
        match dtype {
            // SAFETY: reading an immutable handle exported by mpi-sys.
            DType::Fp32 => unsafe { ffi::RSMPI_SUM },
            DType::Bf16 => self.bf16,
            DType::Fp16 => self.f16,
        }
    }

    /// Frees the user ops; call once, before MPI_Finalize.
    pub(crate) fn free(&mut self) {
        // SAFETY: the handles came from MPI_Op_create and are freed exactly once (then
        // replaced by copies of MPI_SUM, which is never freed).
        unsafe {
            if !mpi::environment::is_finalized() {
                if self.bf16 != ffi::RSMPI_SUM {
                    ffi::MPI_Op_free(&mut self.bf16);
                }
                if self.f16 != ffi::RSMPI_SUM {
                    ffi::MPI_Op_free(&mut self.f16);
                }
            }
            self.bf16 = ffi::RSMPI_SUM;
            self.f16 = ffi::RSMPI_SUM;
        }
    }
}

fn create_op(
    f: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int, *mut ffi::MPI_Datatype),
    what: &str,
) -> anyhow::Result<ffi::MPI_Op> {
    let mut op: ffi::MPI_Op = unsafe { ffi::RSMPI_SUM };
    // SAFETY: MPI is initialised (SumOps is created by Dist::init); `op` is a valid out-pointer.
    let rc = unsafe { ffi::MPI_Op_create(Some(f), 1, &mut op) };
    anyhow::ensure!(rc == 0, "MPI_Op_create ({what}) failed with code {rc}");
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_op_adds_in_f32_and_rounds_once() {
        // 1 + 2^-8 is not a bf16 (8 significant bits): rounds to even, i.e. 1.
        let a = [bf16::from_f32(1.0), bf16::from_f32(3.0)];
        let mut b = [bf16::from_f32(2f32.powi(-8)), bf16::from_f32(-1.5)];
        let mut n: c_int = 2;
        unsafe {
            half_sum_op::<bf16>(
                a.as_ptr() as *mut c_void,
                b.as_mut_ptr() as *mut c_void,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(b[0], bf16::from_f32(1.0));
        assert_eq!(b[1], bf16::from_f32(1.5));
    }
}
