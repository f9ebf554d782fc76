//! 1-second training chunks and the file-level train/validation split.

/// Samples per chunk at 48 kHz (1 s).
pub const CHUNK_SAMPLES: usize = crate::SAMPLE_RATE as usize;

/// Below this peak a chunk counts as silent and is left unscaled.
const SILENCE_PEAK: f32 = 1e-6;

/// Scales `x` so its peak absolute value is 1 (unless it is silent). Returns the old peak.
pub fn peak_normalise(x: &mut [f32]) -> f32 {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak > SILENCE_PEAK {
        let inv = 1.0 / peak;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
    peak
}

/// Number of chunks a signal of `len` samples yields (the last one zero-padded).
pub fn chunk_count(len: usize, chunk: usize) -> usize {
    len.div_ceil(chunk)
}

/// Samples of chunk `index` of a `len`-sample signal that hold the signal (the rest of the
/// last chunk is zero padding; 0 past the end).
pub fn audio_in_chunk(len: usize, chunk: usize, index: usize) -> usize {
    len.saturating_sub(index.saturating_mul(chunk)).min(chunk)
}

/// How training chunks are brought to a common level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalisation {
    /// Every chunk peak-normalised on its own (the reference system): a decay tail or a
    /// near-silent chunk is scaled up to full level.
    PerChunk,
    /// The whole file peak-normalised, its chunks keeping their level relative to it, so
    /// tails stay quiet and silence stays silent.
    PerFile,
}

/// Non-overlapping chunks of `chunk` samples, the last zero-padded, each peak-normalised.
pub fn chunk_signal(samples: &[f32], chunk: usize) -> Vec<Vec<f32>> {
    chunk_signal_with(samples, chunk, Normalisation::PerChunk)
}

/// Non-overlapping chunks of `chunk` samples, the last zero-padded, normalised as asked.
pub fn chunk_signal_with(samples: &[f32], chunk: usize, norm: Normalisation) -> Vec<Vec<f32>> {
    let scale = match norm {
        Normalisation::PerChunk => None,
        Normalisation::PerFile => {
            let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            (peak > SILENCE_PEAK).then(|| 1.0 / peak)
        }
    };
    samples
        .chunks(chunk)
        .map(|c| {
            let mut v = c.to_vec();
            v.resize(chunk, 0.0);
            match (norm, scale) {
                (Normalisation::PerChunk, _) => {
                    peak_normalise(&mut v);
                }
                (Normalisation::PerFile, Some(s)) => v.iter_mut().for_each(|x| *x *= s),
                (Normalisation::PerFile, None) => {}
            }
            v
        })
        .collect()
}

/// Python's `random.Random(seed)` (MT19937), enough of it to reproduce `shuffle`, so our
/// file-level split equals the reference system's for the same file list.
pub struct PyRandom {
    state: [u32; 624],
    index: usize,
}

impl PyRandom {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = 19_650_218;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        // init_by_array([seed]), as CPython seeds from an int.
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        Self {
            state: mt,
            index: 624,
        }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random._randbelow` for `n < 2^32`.
    fn below(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The reference system's split seed.
pub const SPLIT_SEED: u32 = 42;

/// Splits items (files, in sorted order) into `(train, validation)` like the reference:
/// shuffle with Python's `Random(42)`, the first `max(1, floor(n * val_fraction))` are
/// validation. With two or more items both sides get at least one.
pub fn split_files<T: Clone>(items: &[T], val_fraction: f64) -> (Vec<T>, Vec<T>) {
    let mut shuffled = items.to_vec();
    PyRandom::new(SPLIT_SEED).shuffle(&mut shuffled);
    if shuffled.len() < 2 {
        return (shuffled.clone(), shuffled);
    }
    let val = ((items.len() as f64 * val_fraction) as usize).clamp(1, items.len() - 1);
    let train = shuffled.split_off(val);
    (train, shuffled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_random() {
        // python3 -c "import random; r=random.Random(42); print([r.getrandbits(32) for _ in range(3)])"
        let mut r = PyRandom::new(42);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [2_746_317_213, 478_163_327, 107_420_369]
        );
        // python3 -c "import random; x=list(range(10)); random.Random(42).shuffle(x); print(x)"
        let mut x: Vec<u32> = (0..10).collect();
        PyRandom::new(42).shuffle(&mut x);
        assert_eq!(x, vec![7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
    }

    #[test]
    fn split_keeps_both_sides_and_is_deterministic() {
        let files: Vec<u32> = (0..5).collect();
        let (train, val) = split_files(&files, 0.5);
        assert_eq!((train.len(), val.len()), (3, 2));
        assert_eq!(split_files(&files, 0.5), (train.clone(), val.clone()));
        let mut all: Vec<u32> = train.into_iter().chain(val).collect();
        all.sort();
        assert_eq!(all, files);
        let (t, v) = split_files(&[1, 2], 0.1);
        assert_eq!((t.len(), v.len()), (1, 1));
    }

    #[test]
    fn chunks_are_padded_and_normalised() {
        let x: Vec<f32> = (0..250).map(|i| (i as f32 / 10.0).sin() * 0.25).collect();
        let chunks = chunk_signal(&x, 100);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() == 100));
        for c in &chunks {
            let peak = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!((peak - 1.0).abs() < 1e-6);
        }
        assert!(chunks[2][50..].iter().all(|&v| v == 0.0));
        let audio: Vec<usize> = (0..4).map(|j| audio_in_chunk(x.len(), 100, j)).collect();
        assert_eq!(
            audio,
            [100, 100, 50, 0],
            "the padding starts where the signal ends"
        );
        assert_eq!(audio_in_chunk(200, 100, 1), 100);
        let mut silent = vec![1e-8f32; 10];
        peak_normalise(&mut silent);
        assert_eq!(silent[0], 1e-8);
    }
}
