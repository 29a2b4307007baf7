//! Counting the bytes a backend copies between host and device, so metrics can report
//! `h2d_bytes` and `d2h_bytes` per step and tests can prove a device-aware step moves
//! nothing but its batch and its logged scalars.
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes copied so far, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    pub h2d: u64,
    pub d2h: u64,
}

impl Transfers {
    /// The bytes copied since `earlier`.
    pub fn since(self, earlier: Transfers) -> Transfers {
        Transfers {
            h2d: self.h2d - earlier.h2d,
            d2h: self.d2h - earlier.d2h,
        }
    }
}

/// A backend's running totals (shared by the threads that may hold the backend).
#[derive(Debug, Default)]
pub struct TransferCounter {
    h2d: AtomicU64,
    d2h: AtomicU64,
}

impl TransferCounter {
    pub fn h2d(&self, bytes: usize) {
        self.h2d.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn d2h(&self, bytes: usize) {
        self.d2h.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> Transfers {
        Transfers {
            h2d: self.h2d.load(Ordering::Relaxed),
            d2h: self.d2h.load(Ordering::Relaxed),
        }
    }
}
