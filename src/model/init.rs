//! Seeded, world-size-independent parameter initialisation.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The generator for unit `u`: one ChaCha stream per unit, so a unit's values depend only
/// on (seed, u), never on which rank or how many ranks initialise it.
pub fn unit_rng(seed: u64, u: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u as u64);
    rng
}

/// Fills `dst` with normal(0, std) draws.
pub fn normal(rng: &mut ChaCha8Rng, dst: &mut [f32], std: f32) {
    for v in dst {
        let z: f32 = rng.sample(StandardNormal);
        *v = z * std;
    }
}

/// Fills `dst` with uniform(-bound, bound) draws.
pub fn uniform(rng: &mut ChaCha8Rng, dst: &mut [f32], bound: f32) {
    for v in dst {
        *v = rng.gen_range(-bound..=bound);
    }
}
