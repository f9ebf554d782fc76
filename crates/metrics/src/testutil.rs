//! Synthetic test signals (seeded, so every test is deterministic) shared by the tests.

use std::f32::consts::PI;

use audio::SpectrogramConfig;
use audio::mel::MelSpectrogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SR: usize = 48_000;

pub fn mel() -> MelSpectrogram {
    MelSpectrogram::new(SpectrogramConfig::default())
}

pub fn noise(len: usize, amp: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| amp * rng.random_range(-1.0f32..1.0))
        .collect()
}

pub fn sine(len: usize, hz: f32, amp: f32) -> Vec<f32> {
    (0..len)
        .map(|i| amp * (2.0 * PI * hz * i as f32 / SR as f32).sin())
        .collect()
}

/// Unit impulses every `period` samples starting at `first`.
pub fn clicks(len: usize, first: usize, period: usize) -> Vec<f32> {
    let mut x = vec![0.0; len];
    for i in (first..len).step_by(period) {
        x[i] = 1.0;
    }
    x
}

/// Noise with an exponential decay of time constant `tau` seconds.
pub fn decaying_noise(len: usize, tau: f32, seed: u64) -> Vec<f32> {
    noise(len, 1.0, seed)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v * (-(i as f32) / (tau * SR as f32)).exp())
        .collect()
}

/// A "drum hit": decaying noise through a one-pole low-pass of coefficient `lp` (0 = white,
/// near 1 = dark), so different `lp` give audibly different sounds.
pub fn hit(len: usize, tau: f32, lp: f32, seed: u64) -> Vec<f32> {
    let mut y = 0.0f32;
    decaying_noise(len, tau, seed)
        .into_iter()
        .map(|v| {
            y = lp * y + (1.0 - lp) * v;
            y
        })
        .collect()
}
