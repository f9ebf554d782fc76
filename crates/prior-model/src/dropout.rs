//! Dropout masks drawn on the host from a counter-based generator, so that training is
//! seeded by the epoch's RNG alone and masks can be filled in parallel.

use burn::prelude::*;
use rayon::prelude::*;

/// Inverted dropout with masks from a fast host generator (SplitMix64), seeded once per
/// forward pass.
pub(crate) struct DropoutMasks {
    prob: f64,
    state: u64,
}

impl DropoutMasks {
    pub(crate) fn new(prob: f64, seed: u64) -> Self {
        Self { prob, state: seed }
    }

    /// `n` mask values (`0` or `1 / (1 − prob)`), continuing this generator's stream.
    fn mask(&mut self, n: usize) -> Vec<f32> {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        const PAIRS_PER_TASK: usize = 16 * 1024;
        let keep_bits = ((1.0 / (1.0 - self.prob)) as f32).to_bits();
        // Two 32-bit draws per 64-bit output; an element is dropped when its draw < threshold.
        let threshold = (self.prob * f64::from(u32::MAX)) as u32;
        let base = self.state;
        let mut values = vec![0.0f32; n];
        values
            .par_chunks_mut(2 * PAIRS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first_pair = (task * PAIRS_PER_TASK) as u64;
                // Branch-free select: a random keep/drop branch mispredicts a third of the time.
                let pick = |half: u32| {
                    f32::from_bits(keep_bits & 0u32.wrapping_sub(u32::from(half >= threshold)))
                };
                let draw = |j: usize| {
                    let counter = first_pair + j as u64 + 1;
                    Self::mix(base.wrapping_add(counter.wrapping_mul(GAMMA)))
                };
                let full_pairs = chunk.len() / 2;
                let mut pairs = chunk.chunks_exact_mut(2);
                for (j, pair) in pairs.by_ref().enumerate() {
                    let r = draw(j);
                    pair[0] = pick(r as u32);
                    pair[1] = pick((r >> 32) as u32);
                }
                if let [last] = pairs.into_remainder() {
                    *last = pick(draw(full_pairs) as u32);
                }
            });
        self.state = base.wrapping_add((n.div_ceil(2) as u64).wrapping_mul(GAMMA));
        values
    }

    /// SplitMix64 output for a given state: counter-based, so any draw can be computed
    /// without the ones before it (masks are filled in parallel, identically every time).
    fn mix(state: u64) -> u64 {
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Zeroes each element with probability `prob` and scales the rest by `1 / (1 − prob)`.
    pub(crate) fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        if self.prob <= 0.0 {
            return x;
        }
        let shape = x.shape();
        let values = self.mask(shape.num_elements());
        let mask = Tensor::<D>::from_data(TensorData::new(values, shape), &x.device());
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::DropoutMasks;

    /// The plain sequential SplitMix64 stream the parallel mask must reproduce.
    fn sequential_mask(prob: f64, seed: u64, n: usize) -> (Vec<f32>, u64) {
        let keep = (1.0 / (1.0 - prob)) as f32;
        let threshold = (prob * f64::from(u32::MAX)) as u32;
        let mut state = seed;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let r = DropoutMasks::mix(state);
            for half in [r as u32, (r >> 32) as u32] {
                if out.len() < n {
                    out.push(if half < threshold { 0.0 } else { keep });
                }
            }
        }
        (out, state)
    }

    #[test]
    fn parallel_masks_equal_the_sequential_stream() {
        // Odd sizes spanning several parallel tasks, drawn back to back as a forward pass does.
        let sizes = [3, 70_001, 65_536 + 1];
        let mut masks = DropoutMasks::new(0.3, 42);
        let mut state = 42;
        for n in sizes {
            let got = masks.mask(n);
            let (want, next) = sequential_mask(0.3, state, n);
            assert_eq!(got, want, "mask of {n} elements");
            state = next;
            assert_eq!(masks.state, state, "stream position after {n} elements");
        }
        let big = DropoutMasks::new(0.3, 7).mask(200_000);
        let dropped = big.iter().filter(|&&v| v == 0.0).count() as f64 / big.len() as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped fraction {dropped}");
        assert!(
            big.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6)
        );
    }
}
