//! Communication accounting: elements this rank contributed to each kind of collective
//! during the current step. The caller passes the logical volume of each collective
//! (the element count of the full buffer it reduces or gathers), so that a step's total
//! can be compared with the ZeRO paper's 2Ψ (stages 0-2) and 3Ψ (stage 3).
use serde::{Deserialize, Serialize};

/// A collective kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommKind {
    Allreduce,
    ReduceScatter,
    Allgather,
    Broadcast,
}

/// Elements per collective kind this step, and their total; serialises as the record's
/// `comm` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommCounter {
    pub allreduce: u64,
    pub reduce_scatter: u64,
    pub allgather: u64,
    pub broadcast: u64,
    pub total: u64,
}

impl CommCounter {
    /// Counts `elems` elements of a collective.
    pub fn add(&mut self, kind: CommKind, elems: usize) {
        let e = elems as u64;
        match kind {
            CommKind::Allreduce => self.allreduce += e,
            CommKind::ReduceScatter => self.reduce_scatter += e,
            CommKind::Allgather => self.allgather += e,
            CommKind::Broadcast => self.broadcast += e,
        }
        self.total += e;
    }

    /// Zeroes every count (at the start of each step).
    pub fn reset(&mut self) {
        *self = CommCounter::default();
    }

    /// The five values in field order, for an element-wise max over ranks.
    pub fn to_array(&self) -> [u64; 5] {
        [
            self.allreduce,
            self.reduce_scatter,
            self.allgather,
            self.broadcast,
            self.total,
        ]
    }

    /// Inverse of [`CommCounter::to_array`].
    pub fn from_array(a: [u64; 5]) -> Self {
        CommCounter {
            allreduce: a[0],
            reduce_scatter: a[1],
            allgather: a[2],
            broadcast: a[3],
            total: a[4],
        }
    }
}

/// Bytes sent within a node and between nodes (the record's `comm_bytes`: a step's sum
/// over ranks, counted as ring collectives, `zero::ring_bytes`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBytes {
    pub intra_node: u64,
    pub inter_node: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_total_and_reset() {
        let mut c = CommCounter::default();
        c.add(CommKind::ReduceScatter, 1000);
        c.add(CommKind::Allgather, 1000);
        c.add(CommKind::Allgather, 24);
        c.add(CommKind::Allreduce, 1);
        c.add(CommKind::Broadcast, 5);
        assert_eq!(c.to_array(), [1, 1000, 1024, 5, 2030]);
        assert_eq!(CommCounter::from_array(c.to_array()), c);
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"allreduce":1,"reduce_scatter":1000,"allgather":1024,"broadcast":5,"total":2030}"#
        );
        c.reset();
        assert_eq!(c, CommCounter::default());
    }
}
